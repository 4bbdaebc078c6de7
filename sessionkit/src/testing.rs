//! The store conformance suite (feature `testing`): one behavioural suite that
//! every [`Store`] must pass, exported so third-party stores can run it too.
//!
//! ```ignore
//! // in your store crate's tests/conformance.rs
//! sessionkit::store_conformance_tests!(my_store, async { MyStore::connect("…").await });
//! sessionkit::server_store_conformance_tests!(my_store_server, async { MyStore::connect("…").await });
//! sessionkit::query_store_conformance_tests!(my_store_query, async { MyStore::connect("…").await });
//! ```
//!
//! - [`store_conformance_tests!`](crate::store_conformance_tests): every store (including stores that seal the
//!   session in the cookie).
//! - [`server_store_conformance_tests!`](crate::server_store_conformance_tests): stores that keep sessions server-side:
//!   no overwrite on create, no resurrection after delete, atomic regenerate,
//!   no lost update between concurrent requests.
//! - [`query_store_conformance_tests!`](crate::query_store_conformance_tests): the [`QueryStore`] operations and the owner index.
//!
//! The macros expand to `#[tokio::test(flavor = "multi_thread")]` functions:
//! the crate that uses them needs `tokio` as a dev-dependency with the
//! `macros` and `rt-multi-thread` features. The expiry cases use the system
//! clock and real sleeps of a few hundred milliseconds, and deadlines must
//! round-trip to the millisecond.
//!
//! The suite uses its own data type, [`TestData`]: a store under test must be
//! a `Store<TestData>`. Each case takes a fresh store from the given expression
//! and must not depend on what other tests left there. The cases run at once
//! and one of them compares `QueryStore::count` before and after its own
//! writes, so give each case a namespace of its own (the in-tree stores use a
//! key prefix per case); the other cases tell their sessions apart by a
//! unique owner.

#[path = "testing_redis_cluster.rs"]
pub mod redis_cluster;
#[path = "testing_redis.rs"]
pub mod redis_server;

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::expiry::{to_millis, ExpiryPolicy};
use crate::flash::FlashMessage;
use crate::id::{SessionHandle, SessionId};
use crate::record::Record;
use crate::store::{MetaChanges, QueryStore, Removed, Save, SaveKind, SaveOutcome, Store};

/// The data type the suite stores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TestData {
    /// A user name.
    pub name: Option<String>,
    /// A counter.
    pub counter: u64,
    /// Some tags.
    pub tags: Vec<String>,
}

fn record(owner: Option<&str>) -> Record<TestData> {
    let mut r = Record::new(
        SessionId::generate(),
        TestData {
            name: Some("alice".into()),
            counter: 1,
            tags: vec!["a".into()],
        },
        SystemTime::now(),
        &ExpiryPolicy::default(),
    );
    r.owner = owner.map(str::to_owned);
    r
}

fn unique_owner() -> String {
    format!("owner-{}", &SessionId::generate().encode()[..16])
}

async fn create<S: Store<TestData>>(store: &S, r: &Record<TestData>) -> String {
    match store.save(Save::create(r)).await {
        Ok(SaveOutcome::Saved(v)) => v,
        other => panic!("create failed: {other:?}"),
    }
}

/// Loads through [`Store::load`] and checks that [`Store::load_now`], when
/// the store answers it, agrees.
async fn load<S: Store<TestData>>(store: &S, cookie: &str) -> Option<Record<TestData>> {
    let loaded = store
        .load(cookie)
        .await
        .expect("load must not fail on a healthy store");
    if let Some(now) = store.load_now(cookie) {
        let now = now.expect("load_now must not fail when load did not");
        assert_eq!(
            now.as_ref().map(fingerprint),
            loaded.as_ref().map(fingerprint),
            "load_now disagrees with load"
        );
    }
    loaded
}

/// What must match between two loads of the same record.
fn fingerprint(r: &Record<TestData>) -> impl PartialEq + std::fmt::Debug {
    (
        r.id,
        r.data.clone(),
        r.version,
        r.owner.clone(),
        r.flash.clone(),
        r.binding.clone(),
        to_millis(r.created_at),
        to_millis(r.idle_deadline),
        to_millis(r.absolute_deadline),
    )
}

/// Regenerates the session under `old` to `moved` (its id a fresh one),
/// which must save; returns the value answered.
async fn regenerate_to<S: Store<TestData>>(
    store: &S,
    moved: &Record<TestData>,
    old: SessionId,
) -> String {
    let out = store
        .save(Save::regenerate(moved, old, None))
        .await
        .unwrap();
    let SaveOutcome::Saved(value) = out else {
        panic!("a regenerate of a live session must save: {out:?}");
    };
    value
}

/// Regenerates a session with an owner, a binding and a flash message, and
/// checks what every store keeps: the value answered loads the session
/// under its new id with data, owner, binding, flash and creation time
/// carried, at the loaded version + 1. Returns the record as loaded, the
/// value answered and the record it loads.
async fn regenerated<S: Store<TestData>>(
    store: &S,
) -> (Record<TestData>, String, Record<TestData>) {
    let mut r = record(Some("ann"));
    r.binding = Some("fingerprint".into());
    r.flash.push(FlashMessage {
        key: "notice".into(),
        value: "hello".into(),
    });
    let cookie = create(store, &r).await;
    let loaded = load(store, &cookie).await.unwrap();
    let mut moved = loaded.clone();
    moved.id = SessionId::generate();
    let value = regenerate_to(store, &moved, loaded.id).await;
    let got = load(store, &value).await.expect("the new value loads");
    assert_eq!(got.id, moved.id);
    assert_eq!(got.data, loaded.data);
    assert_eq!(got.owner, loaded.owner);
    assert_eq!(got.binding, loaded.binding);
    assert_eq!(got.flash, loaded.flash);
    assert_eq!(to_millis(got.created_at), to_millis(loaded.created_at));
    assert_eq!(got.version, loaded.version + 1);
    (loaded, value, got)
}

/// Behaviours every store keeps.
pub mod cases {
    use super::*;

    /// Data, owner, binding, flash and deadlines (to the millisecond) survive a round trip.
    pub async fn created_session_loads_back_intact<S: Store<TestData>>(store: S) {
        let mut r = record(Some("alice"));
        // A store that dropped the binding would switch client binding off.
        r.binding = Some("client-fingerprint".into());
        r.flash.push(FlashMessage {
            key: "notice".into(),
            value: "hi".into(),
        });
        let cookie = create(&store, &r).await;
        let got = load(&store, &cookie)
            .await
            .expect("created session must load");
        assert_eq!(got.id, r.id);
        assert_eq!(got.data, r.data);
        assert_eq!(got.owner.as_deref(), Some("alice"));
        assert_eq!(got.binding.as_deref(), Some("client-fingerprint"));
        assert_eq!(got.flash, r.flash);
        assert_eq!(to_millis(got.created_at), to_millis(r.created_at));
        assert_eq!(to_millis(got.idle_deadline), to_millis(r.idle_deadline));
        assert_eq!(
            to_millis(got.absolute_deadline),
            to_millis(r.absolute_deadline)
        );
        assert!(got.version >= 1, "a written record has a version");
    }

    /// Malformed, hostile or unknown cookie values load as `None`, never an error.
    pub async fn unknown_and_hostile_values_load_as_none<S: Store<TestData>>(store: S) {
        let long = "A".repeat(10_000);
        let unknown = SessionId::generate().encode();
        for v in [
            "",
            "*",
            "a\r\nb",
            "sessionkit:*",
            "\0",
            long.as_str(),
            unknown.as_str(),
        ] {
            assert!(
                load(&store, v).await.is_none(),
                "value {:?}… loaded",
                v.chars().take(8).collect::<String>()
            );
        }
    }

    /// A regenerate answers a value that loads the session under its new
    /// id, with every field carried and the loaded version + 1 (for a store
    /// sealing the session into the cookie too: the old value may still
    /// open, but the new one names the new id).
    pub async fn regenerate_answers_the_new_id_with_every_field<S: Store<TestData>>(store: S) {
        regenerated(&store).await;
    }

    /// Values made from a real cookie value by a client or an attacker (cut
    /// short, lengthened, re-encoded, one character changed anywhere, in
    /// bits that carry data) load as `None`: never an error, never the
    /// session.
    pub async fn tampered_values_load_as_none<S: Store<TestData>>(store: S) {
        let cookie = create(&store, &record(None)).await;
        let chars: Vec<char> = cookie.chars().collect();
        let mut tampered = vec![
            chars[..chars.len() - 1].iter().collect::<String>(),
            format!("{cookie}A"),
            format!("{cookie}="),
            format!(" {cookie}"),
            cookie.to_uppercase(),
            cookie.replace('-', "+").replace('_', "/"),
            "%".repeat(chars.len()),
            "\u{e9}".repeat(chars.len() / 2),
        ];
        for i in 0..chars.len() {
            let mut flipped = chars.clone();
            // The last character's top bit always carries data ('A' is 0,
            // 'g' 32); its low bits may be spare.
            let (to, from) = if i + 1 == chars.len() {
                ('g', 'A')
            } else {
                ('B', 'A')
            };
            flipped[i] = if chars[i] == from { to } else { from };
            tampered.push(flipped.into_iter().collect());
        }
        for v in tampered.iter().filter(|v| **v != cookie) {
            match store.load(v).await {
                Ok(None) => {}
                other => panic!(
                    "tampered value {:?}… gave {:?}",
                    v.chars().take(12).collect::<String>(),
                    other.map(|r| r.map(|r| r.id))
                ),
            }
        }
        assert!(
            load(&store, &cookie).await.is_some(),
            "the real one still loads"
        );
    }

    /// Every value a save answers is made of RFC 6265 cookie octets (the
    /// HTTP layers refuse to send anything else).
    pub async fn saved_values_are_cookie_octets<S: Store<TestData>>(store: S) {
        let octet =
            |b: u8| matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E);
        let mut r = record(Some("zo\u{eb}"));
        r.data.name = Some("Zo\u{eb} \u{1f469}\u{200d}\u{1f4bb}".into());
        let cookie = create(&store, &r).await;
        assert!(cookie.bytes().all(octet), "create answered {cookie:?}");
        let loaded = load(&store, &cookie).await.unwrap();
        let mut changed = loaded.clone();
        changed.data.counter += 1;
        let out = store
            .save(Save::update(&changed, Some(&loaded.data)))
            .await
            .unwrap();
        if let SaveOutcome::Saved(v) = out {
            assert!(v.bytes().all(octet), "update answered {v:?}");
        }
    }

    /// Text that is not ASCII, and control characters, round-trip in every
    /// field; data too large for the store is an error, never a panic or a
    /// value over a cookie's limit.
    pub async fn any_text_round_trips_and_large_data_is_refused_or_kept<S: Store<TestData>>(
        store: S,
    ) {
        let mut r = record(Some("jos\u{e9}"));
        r.data.name = Some("Zo\u{eb} \u{1f469}\u{200d}\u{1f4bb}".into());
        r.data.tags = vec!["\u{202e}".into(), "\0".into(), "\"quoted\"; a=b".into()];
        r.binding = Some("b\u{ee}nding".into());
        r.flash.push(FlashMessage {
            key: "n\u{f6}tice".into(),
            value: "\u{1f600} \r\n".into(),
        });
        let cookie = create(&store, &r).await;
        let got = load(&store, &cookie).await.unwrap();
        assert_eq!(got.data, r.data);
        assert_eq!(got.owner, r.owner);
        assert_eq!(got.binding, r.binding);
        assert_eq!(got.flash, r.flash);
        // 256 KiB of random (incompressible) text.
        let mut big = record(None);
        big.data.tags = (0..6_000).map(|_| SessionId::generate().encode()).collect();
        match store.save(Save::create(&big)).await {
            Ok(SaveOutcome::Saved(v)) => {
                assert!(
                    store.holds_sessions() || v.len() <= 4096,
                    "a {}-byte cookie value",
                    v.len()
                );
                assert_eq!(load(&store, &v).await.unwrap().data, big.data);
            }
            Err(
                crate::StoreError::CookieTooLarge { .. }
                | crate::StoreError::Encode(_)
                | crate::StoreError::Backend(_),
            ) => assert!(
                !store.holds_sessions(),
                "a server-side store refused 256 KiB of data"
            ),
            other => panic!("a large create answered {other:?}"),
        }
    }

    /// Writes through [`Store::save_now`] (when the store offers it) are
    /// ordinary writes: the async path sees them, with the same versions.
    pub async fn synchronous_saves_are_ordinary_saves<S: Store<TestData>>(store: S) {
        let mut r = record(None);
        let Some(created) = store.save_now(Save::create(&r)) else {
            return; // the store always waits: nothing to compare
        };
        let Ok(SaveOutcome::Saved(cookie)) = created else {
            panic!("create through save_now failed: {created:?}");
        };
        let got = load(&store, &cookie)
            .await
            .expect("created session must load");
        assert_eq!(got.version, 1);
        r = got;
        r.data.counter += 1;
        let updated = store.save_now(Save::update(&r, None));
        let Some(Ok(out)) = updated else {
            panic!("update through save_now failed: {updated:?}");
        };
        let Some(cookie) = out.cookie_value(&cookie) else {
            panic!("update through save_now found the session gone");
        };
        let got = load(&store, &cookie)
            .await
            .expect("updated session must load");
        assert_eq!((got.data.counter, got.version), (r.data.counter, 2));
    }

    /// An update replaces the data; loading shows the new data.
    pub async fn update_replaces_data<S: Store<TestData>>(store: S) {
        let r = record(None);
        let cookie = create(&store, &r).await;
        let mut loaded = load(&store, &cookie).await.unwrap();
        let base = loaded.data.clone();
        loaded.data.counter = 42;
        let out = store
            .save(Save::update(&loaded, Some(&base)))
            .await
            .unwrap();
        let Some(cookie2) = out.cookie_value(&cookie) else {
            panic!("update of a live session must save")
        };
        assert_eq!(load(&store, &cookie2).await.unwrap().data.counter, 42);
    }
}

/// Behaviours of stores that keep sessions server-side.
pub mod server_cases {
    use super::*;

    /// The cookie value is the session id, not the data.
    pub async fn cookie_value_is_the_session_id<S: Store<TestData>>(store: S) {
        let r = record(None);
        assert_eq!(create(&store, &r).await, r.id.encode());
    }

    /// Creating with an existing id never overwrites the existing session.
    pub async fn create_never_overwrites<S: Store<TestData>>(store: S) {
        let r = record(None);
        let cookie = create(&store, &r).await;
        let mut other = r.clone();
        other.data.counter = 999;
        let second = store.save(Save::create(&other)).await;
        assert!(
            !matches!(&second, Ok(out) if out.is_saved()),
            "second create with one id must fail"
        );
        // About one session, not the store's health: a breaker in front of
        // the store must not count it.
        if let Err(e) = &second {
            assert!(
                matches!(e, crate::StoreError::Conflict(_)),
                "a create that finds its id taken is StoreError::Conflict, not {e:?}"
            );
        }
        assert_eq!(load(&store, &cookie).await.unwrap().data.counter, 1);
    }

    /// A deleted session is gone; deleting again reports it was not there.
    pub async fn delete_removes_the_session<S: Store<TestData>>(store: S) {
        let r = record(None);
        let cookie = create(&store, &r).await;
        assert!(store.delete(&r.id).await.unwrap());
        assert!(load(&store, &cookie).await.is_none());
        assert!(!store.delete(&r.id).await.unwrap());
    }

    /// A save of a session deleted meanwhile does not bring it back.
    pub async fn update_after_delete_does_not_resurrect<S: Store<TestData>>(store: S) {
        let r = record(None);
        let cookie = create(&store, &r).await;
        let mut loaded = load(&store, &cookie).await.unwrap();
        store.delete(&r.id).await.unwrap();
        let base = loaded.data.clone();
        loaded.data.counter = 5;
        let out = store.save(Save::update(&loaded, Some(&base))).await;
        assert_eq!(out.unwrap(), SaveOutcome::Gone);
        assert!(load(&store, &cookie).await.is_none());
    }

    /// Regenerate: the new id holds the data, the old id is dead.
    pub async fn regenerate_moves_the_session_to_a_new_id<S: Store<TestData>>(store: S) {
        let r = record(None);
        let old_cookie = create(&store, &r).await;
        let mut loaded = load(&store, &old_cookie).await.unwrap();
        let old = loaded.id;
        loaded.id = SessionId::generate();
        let out = store
            .save(Save {
                record: &loaded,
                base: None,
                kind: SaveKind::Regenerate { old },
                changes: MetaChanges::NONE,
                write_id: 0,
            })
            .await
            .unwrap();
        let SaveOutcome::Saved(new_cookie) = out else {
            panic!("regenerate must save")
        };
        assert_ne!(new_cookie, old_cookie);
        assert!(
            load(&store, &old_cookie).await.is_none(),
            "old id must be dead"
        );
        assert_eq!(load(&store, &new_cookie).await.unwrap().data, r.data);
    }

    /// A logout whose request loaded a session a parallel login (or two
    /// id rotations) has just moved to a new id ends it there:
    /// [`Store::delete_following`] of the old id deletes the session under
    /// its newest id and says so (with its owner as deleted, which a login
    /// in between may have set), once. A plain [`Store::delete`] of an old
    /// id (what a bulk delete or a revoke runs) follows nothing.
    pub async fn a_logout_racing_a_regenerate_ends_the_moved_session<S: Store<TestData>>(store: S) {
        let move_on = |loaded: Record<TestData>, owner: Option<&'static str>| {
            let store = &store;
            async move {
                let mut moved = loaded.clone();
                moved.id = SessionId::generate();
                moved.owner = owner.map(str::to_owned);
                let value = regenerate_to(store, &moved, loaded.id).await;
                load(store, &value).await.expect("the new value loads")
            }
        };
        // One move: a logout that loaded the old id.
        let (loaded, new_cookie, _) = regenerated(&store).await;
        assert!(
            !store.delete(&loaded.id).await.unwrap(),
            "a plain delete of the old id follows nothing"
        );
        assert!(load(&store, &new_cookie).await.is_some());
        assert_eq!(
            store.delete_following(&loaded.id).await.unwrap(),
            crate::store::Followed::Moved {
                owner: Some("ann".into())
            },
            "the logout must end the session under its new id"
        );
        assert!(load(&store, &new_cookie).await.is_none());
        assert_eq!(
            store.delete_following(&loaded.id).await.unwrap(),
            crate::store::Followed::Nothing,
            "a repeated logout finds nothing"
        );
        // Two moves (a login, then an id rotation) since the logout loaded.
        let first = record(None);
        let cookie = create(&store, &first).await;
        let loaded = load(&store, &cookie).await.unwrap();
        let second = move_on(loaded.clone(), Some("bo")).await;
        let third = move_on(second, Some("bob")).await;
        assert_eq!(
            store.delete_following(&loaded.id).await.unwrap(),
            crate::store::Followed::Moved {
                owner: Some("bob".into())
            }
        );
        assert!(load(&store, &third.id.encode()).await.is_none());
        // A session that never moved is deleted as by `delete`.
        let plain = record(None);
        let cookie = create(&store, &plain).await;
        assert_eq!(
            store.delete_following(&plain.id).await.unwrap(),
            crate::store::Followed::Deleted
        );
        assert!(load(&store, &cookie).await.is_none());
        assert_eq!(
            store
                .delete_following(&SessionId::generate())
                .await
                .unwrap(),
            crate::store::Followed::Nothing
        );
    }

    /// Regenerating a session deleted meanwhile does not create it under the new id.
    pub async fn regenerate_after_delete_is_gone<S: Store<TestData>>(store: S) {
        let r = record(None);
        let cookie = create(&store, &r).await;
        let mut loaded = load(&store, &cookie).await.unwrap();
        store.delete(&r.id).await.unwrap();
        loaded.id = SessionId::generate();
        let out = store
            .save(Save::regenerate(&loaded, r.id, None))
            .await
            .unwrap();
        assert_eq!(out, SaveOutcome::Gone);
        assert!(load(&store, &loaded.id.encode()).await.is_none());
    }

    /// Two requests that loaded the same version and changed different fields both survive.
    pub async fn concurrent_updates_of_different_fields_both_survive<S: Store<TestData>>(store: S) {
        let r = record(None);
        let cookie = create(&store, &r).await;
        let a = load(&store, &cookie).await.unwrap();
        let b = a.clone();
        let (mut a2, mut b2) = (a.clone(), b.clone());
        a2.data.counter = 10;
        b2.data.tags.push("b".into());
        store.save(Save::update(&a2, Some(&a.data))).await.unwrap();
        store.save(Save::update(&b2, Some(&b.data))).await.unwrap();
        let got = load(&store, &cookie).await.unwrap();
        assert_eq!(got.data.counter, 10, "first writer's change lost");
        assert_eq!(
            got.data.tags,
            vec!["a".to_string(), "b".to_string()],
            "second writer's change lost"
        );
        // Merged or not, each write stores the version after the one it
        // replaced: a merged write that stored its loaded version + 1 (2
        // again) would let the next stale writer skip its merge.
        assert_eq!(got.version, 3, "two writes after the create");
    }

    /// Updates racing a delete, from tasks running at once: whatever the
    /// order, the session stays deleted (an update checked against a read
    /// made before the delete, then written after it, would revive it).
    pub async fn racing_updates_and_a_delete_never_resurrect<S: Store<TestData>>(store: S) {
        let store = std::sync::Arc::new(store);
        for round in 0..40 {
            let r = record(None);
            let cookie = create(&*store, &r).await;
            let loaded = load(&*store, &cookie).await.unwrap();
            let updates: Vec<_> = (0..3)
                .map(|i| {
                    let (store, loaded) = (store.clone(), loaded.clone());
                    tokio::spawn(async move {
                        let mut mine = loaded.clone();
                        mine.data.counter = 100 + i;
                        store.save(Save::update(&mine, Some(&loaded.data))).await
                    })
                })
                .collect();
            let delete = {
                let store = store.clone();
                tokio::spawn(async move { store.delete(&r.id).await })
            };
            for u in updates {
                let out = u.await.expect("update task");
                assert!(out.is_ok(), "round {round}: {out:?}");
            }
            delete.await.expect("delete task").expect("delete");
            assert!(
                load(&*store, &cookie).await.is_none(),
                "round {round}: a racing update brought a deleted session back"
            );
        }
    }

    /// Requests running at once, each changing another field of the same
    /// loaded version: every change survives.
    pub async fn racing_updates_of_different_fields_all_survive<S: Store<TestData>>(store: S) {
        let store = std::sync::Arc::new(store);
        for round in 0..20 {
            let r = record(None);
            let cookie = create(&*store, &r).await;
            let loaded = load(&*store, &cookie).await.unwrap();
            let change = |f: fn(&mut TestData)| {
                let (store, loaded) = (store.clone(), loaded.clone());
                tokio::spawn(async move {
                    let mut mine = loaded.clone();
                    f(&mut mine.data);
                    store.save(Save::update(&mine, Some(&loaded.data))).await
                })
            };
            let tasks = [
                change(|d| d.counter = 7),
                change(|d| d.name = Some("bob".into())),
                change(|d| d.tags = vec!["z".into()]),
            ];
            for t in tasks {
                let out = t.await.expect("update task").expect("update");
                assert!(out.is_saved(), "round {round}: {out:?}");
            }
            let got = load(&*store, &cookie).await.unwrap();
            assert_eq!(
                (got.data.counter, got.data.name.as_deref(), got.data.tags),
                (7, Some("bob"), vec!["z".to_string()]),
                "round {round}: a concurrent change was lost"
            );
            assert_eq!(
                got.version, 4,
                "round {round}: three writes after the create"
            );
        }
    }

    /// Two creates of one id at once: exactly one is saved, and the
    /// session holds its data.
    pub async fn racing_creates_of_one_id_save_once<S: Store<TestData>>(store: S) {
        let store = std::sync::Arc::new(store);
        for round in 0..40 {
            let r = record(None);
            let creates: Vec<_> = (0..2u64)
                .map(|i| {
                    let store = store.clone();
                    let mut mine = r.clone();
                    mine.data.counter = 10 + i;
                    tokio::spawn(async move {
                        let saved = matches!(store.save(Save::create(&mine)).await, Ok(out) if out.is_saved());
                        (saved, mine.data.counter)
                    })
                })
                .collect();
            let mut winners = Vec::new();
            for c in creates {
                let (saved, counter) = c.await.expect("create task");
                if saved {
                    winners.push(counter);
                }
            }
            assert_eq!(winners.len(), 1, "round {round}: saved {winners:?}");
            let got = load(&*store, &r.id.encode()).await.unwrap();
            assert_eq!(got.data.counter, winners[0], "round {round}: overwritten");
        }
    }

    /// An update repeated after its reply was lost (a retry) is harmless:
    /// the data is right, a flash message it set appears once, and the
    /// repeat counts as one more write.
    pub async fn a_repeated_update_sets_its_flash_once<S: Store<TestData>>(store: S) {
        let cookie = create(&store, &record(None)).await;
        let loaded = load(&store, &cookie).await.unwrap();
        let mut mine = loaded.clone();
        mine.data.counter = 5;
        mine.flash.push(FlashMessage {
            key: "notice".into(),
            value: "saved".into(),
        });
        let save = Save::update(&mine, Some(&loaded.data)).with_changes(MetaChanges {
            flash_added: 1,
            ..MetaChanges::NONE
        });
        store.save(save).await.unwrap();
        store.save(save).await.unwrap();
        let got = load(&store, &cookie).await.unwrap();
        assert_eq!(got.data.counter, 5);
        assert_eq!(got.flash, mine.flash, "the repeat set the message twice");
        assert_eq!(got.version, 3);
    }

    /// While a regenerate runs, a reader always finds the session under
    /// one id or the other (the new record exists before the old is gone).
    pub async fn a_regenerate_never_leaves_the_session_under_neither_id<S: Store<TestData>>(
        store: S,
    ) {
        let store = std::sync::Arc::new(store);
        for round in 0..40 {
            let r = record(None);
            let cookie = create(&*store, &r).await;
            let loaded = load(&*store, &cookie).await.unwrap();
            let mut moved = loaded.clone();
            moved.id = SessionId::generate();
            let new_cookie = moved.id.encode();
            let reader = {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..200 {
                        if store.load(&cookie).await.unwrap().is_none() {
                            return store.load(&new_cookie).await.unwrap().is_some();
                        }
                        tokio::task::yield_now().await;
                    }
                    true
                })
            };
            let out = store
                .save(Save::regenerate(&moved, loaded.id, None))
                .await
                .unwrap();
            assert!(out.is_saved(), "round {round}: {out:?}");
            assert!(
                reader.await.unwrap(),
                "round {round}: the session was under neither id"
            );
        }
    }

    /// Two requests that loaded the same version: one read a flash message,
    /// set another and changed the owner; the other, saving later, changed
    /// only the data. The message read stays read, the one set stays set,
    /// the owner stays changed, and both data changes survive.
    pub async fn concurrent_flash_and_owner_changes_both_survive<S: Store<TestData>>(store: S) {
        let note = |v: &str| FlashMessage {
            key: "notice".into(),
            value: v.into(),
        };
        let mut r = record(None);
        r.flash.push(note("saved"));
        let cookie = create(&store, &r).await;
        let loaded = load(&store, &cookie).await.unwrap();
        // A: read "saved", set "welcome", became ann's.
        let mut a = loaded.clone();
        a.flash = vec![note("welcome")];
        a.owner = Some("ann".into());
        a.data.counter = 10;
        let taken = [note("saved")];
        let a_changes = MetaChanges {
            flash_taken: &taken,
            flash_added: 1,
            owner: true,
            binding: false,
        };
        // B: changed only the data; "saved" is still unread in its copy.
        let mut b = loaded.clone();
        b.data.tags.push("b".into());
        for (rec, changes) in [(&a, a_changes), (&b, MetaChanges::NONE)] {
            let out = store
                .save(Save {
                    record: rec,
                    base: Some(&loaded.data),
                    kind: SaveKind::Update,
                    changes,
                    write_id: 0,
                })
                .await
                .unwrap();
            assert!(out.is_saved(), "{out:?}");
        }
        let got = load(&store, &cookie).await.unwrap();
        assert_eq!(
            got.flash,
            vec![note("welcome")],
            "flash read came back or set was lost"
        );
        assert_eq!(got.owner.as_deref(), Some("ann"), "owner change lost");
        assert_eq!(got.data.counter, 10);
        assert_eq!(got.data.tags, vec!["a".to_string(), "b".to_string()]);
    }

    /// A request regenerates the id of a session another request saved
    /// since it loaded it: the other request's change moves to the new id.
    pub async fn regenerate_keeps_a_concurrent_update<S: Store<TestData>>(store: S) {
        let r = record(None);
        let cookie = create(&store, &r).await;
        let loaded = load(&store, &cookie).await.unwrap();
        let mut other = loaded.clone();
        other.data.counter = 10;
        other.owner = Some("bob".into());
        store
            .save(Save {
                record: &other,
                base: Some(&loaded.data),
                kind: SaveKind::Update,
                changes: MetaChanges {
                    owner: true,
                    ..MetaChanges::NONE
                },
                write_id: 0,
            })
            .await
            .unwrap();
        let mut moved = loaded.clone();
        moved.id = SessionId::generate();
        moved.data.name = Some("carol".into());
        let out = store
            .save(Save::regenerate(&moved, loaded.id, Some(&loaded.data)))
            .await
            .unwrap();
        let SaveOutcome::Saved(new_cookie) = out else {
            panic!("regenerate must save: {out:?}")
        };
        assert!(load(&store, &cookie).await.is_none(), "old id must be dead");
        let got = load(&store, &new_cookie).await.unwrap();
        assert_eq!(got.data.counter, 10, "the other request's update was lost");
        assert_eq!(got.data.name.as_deref(), Some("carol"));
        assert_eq!(got.owner.as_deref(), Some("bob"));
    }

    /// A session loaded before its deadline and saved after it is gone: an
    /// update or a regenerate does not bring it back (even one that moves
    /// the deadline, as sliding expiration does), whether or not the store
    /// has removed it yet.
    pub async fn a_session_past_its_deadline_is_not_written_back<S: Store<TestData>>(store: S) {
        let mut r = record(None);
        r.idle_deadline = SystemTime::now() + Duration::from_millis(300);
        let cookie = create(&store, &r).await;
        let loaded = load(&store, &cookie).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut touched = loaded.clone();
        touched.idle_deadline = SystemTime::now() + Duration::from_secs(600);
        touched.data.counter = 2;
        let mut moved = touched.clone();
        moved.id = SessionId::generate();
        for (rec, kind) in [
            (&touched, SaveKind::Update),
            (&moved, SaveKind::Regenerate { old: loaded.id }),
        ] {
            let out = store
                .save(Save {
                    record: rec,
                    base: Some(&loaded.data),
                    kind,
                    changes: MetaChanges::NONE,
                    write_id: 0,
                })
                .await
                .unwrap();
            assert_eq!(
                out,
                SaveOutcome::Gone,
                "{kind:?} revived an expired session"
            );
        }
        assert!(load(&store, &moved.id.encode()).await.is_none());
    }

    /// An update that moves the deadlines (sliding expiration) keeps the
    /// session alive past the deadline it was created with: a store whose
    /// backend expiry (a TTL) is set at create and never moved would drop
    /// a live session.
    pub async fn an_update_moves_the_deadline_the_store_keeps<S: Store<TestData>>(store: S) {
        let mut r = record(None);
        r.idle_deadline = SystemTime::now() + Duration::from_millis(400);
        let cookie = create(&store, &r).await;
        let mut loaded = load(&store, &cookie).await.unwrap();
        loaded.idle_deadline = SystemTime::now() + Duration::from_secs(600);
        let out = store.save(Save::update(&loaded, None)).await.unwrap();
        let cookie = out.cookie_value(&cookie).expect("a live session saves");
        tokio::time::sleep(Duration::from_millis(600)).await;
        let got = load(&store, &cookie)
            .await
            .expect("the session died at the deadline it was created with");
        assert_eq!(
            to_millis(got.idle_deadline),
            to_millis(loaded.idle_deadline)
        );
    }

    /// The rules above hold on the synchronous path too, which
    /// [`crate::Sessions`] tries first: through [`Store::save_now`] (when
    /// the store answers it), a create never overwrites, an update of a
    /// deleted session is `Gone`, and so is a regenerate of one.
    pub async fn synchronous_saves_keep_the_rules<S: Store<TestData>>(store: S) {
        let r = record(None);
        let cookie = create(&store, &r).await;
        let mut other = r.clone();
        other.data.counter = 999;
        if let Some(second) = store.save_now(Save::create(&other)) {
            assert!(
                !matches!(&second, Ok(out) if out.is_saved()),
                "a second create with one id saved through save_now"
            );
        }
        assert_eq!(load(&store, &cookie).await.unwrap().data.counter, 1);
        let mut loaded = load(&store, &cookie).await.unwrap();
        store.delete(&r.id).await.unwrap();
        loaded.data.counter = 5;
        if let Some(out) = store.save_now(Save::update(&loaded, None)) {
            assert_eq!(
                out.unwrap(),
                SaveOutcome::Gone,
                "save_now revived a deleted session"
            );
        }
        let mut moved = loaded.clone();
        moved.id = SessionId::generate();
        if let Some(out) = store.save_now(Save::regenerate(&moved, r.id, None)) {
            assert_eq!(
                out.unwrap(),
                SaveOutcome::Gone,
                "save_now regenerated a deleted session"
            );
        }
        assert!(load(&store, &cookie).await.is_none());
        assert!(load(&store, &moved.id.encode()).await.is_none());
    }

    /// Every write stores the version after the one it replaced: 1 after
    /// the create, then one more per update.
    pub async fn versions_increase_on_every_write<S: Store<TestData>>(store: S) {
        let r = record(None);
        let cookie = create(&store, &r).await;
        let v1 = load(&store, &cookie).await.unwrap();
        assert_eq!(v1.version, 1, "the create writes version 1");
        store.save(Save::update(&v1, None)).await.unwrap();
        let v2 = load(&store, &cookie).await.unwrap();
        assert_eq!(v2.version, 2, "an update writes the loaded version + 1");
    }

    /// A stale write that changed no data (`base: None`: a touch, a change
    /// of binding) keeps the newer data another request saved meanwhile,
    /// and a stale data write keeps a binding set meanwhile: a store that
    /// merged only saves with a base would lose one or the other (a lost
    /// binding binds the session to whichever client comes next).
    pub async fn a_stale_write_keeps_what_it_did_not_change<S: Store<TestData>>(store: S) {
        let r = record(None);
        let cookie = create(&store, &r).await;
        let loaded = load(&store, &cookie).await.unwrap();
        // Data first, then a stale write setting only the binding.
        let mut data = loaded.clone();
        data.data.counter = 10;
        store
            .save(Save::update(&data, Some(&loaded.data)))
            .await
            .unwrap();
        let mut bind = loaded.clone();
        bind.binding = Some("fingerprint".into());
        let binding_only = MetaChanges {
            binding: true,
            ..MetaChanges::NONE
        };
        store
            .save(Save::update(&bind, None).with_changes(binding_only))
            .await
            .unwrap();
        let got = load(&store, &cookie).await.unwrap();
        assert_eq!(got.data.counter, 10, "a write without data lost newer data");
        assert_eq!(got.binding.as_deref(), Some("fingerprint"));
        assert_eq!(got.version, 3);
        // The binding first, then a stale data write that did not set it.
        let stale = got.clone();
        let mut rebind = got.clone();
        rebind.binding = Some("other".into());
        store
            .save(Save::update(&rebind, None).with_changes(binding_only))
            .await
            .unwrap();
        let mut data = stale.clone();
        data.data.counter = 11;
        store
            .save(Save::update(&data, Some(&stale.data)))
            .await
            .unwrap();
        let got = load(&store, &cookie).await.unwrap();
        assert_eq!(got.data.counter, 11);
        assert_eq!(
            got.binding.as_deref(),
            Some("other"),
            "a data write lost a binding set meanwhile"
        );
        assert_eq!(got.version, 5);
    }

    /// A regenerate answers the new id's cookie value and carries every
    /// field: owner, binding, flash, creation time, deadlines; it writes the
    /// loaded version + 1.
    pub async fn regenerate_carries_every_field<S: Store<TestData>>(store: S) {
        let (loaded, value, got) = regenerated(&store).await;
        assert_eq!(value, got.id.encode(), "a server-side value is the id");
        assert_eq!(
            to_millis(got.absolute_deadline),
            to_millis(loaded.absolute_deadline)
        );
    }
}

/// Behaviours of [`QueryStore`]s.
pub mod query_cases {
    use super::*;

    /// count, find_by and bulk_delete see the sessions that exist.
    pub async fn find_count_and_bulk_delete<S: QueryStore<TestData>>(store: S) {
        let (owner, other) = (unique_owner(), unique_owner());
        let before = store.count().await.unwrap();
        let mut want = Vec::new();
        for _ in 0..3 {
            let r = record(Some(&owner));
            create(&store, &r).await;
            want.push(r.id.handle().to_string());
        }
        want.sort();
        // Not matched by the predicate: a store that ignores it fails here.
        let bystander = record(Some(&other));
        let bystander_cookie = create(&store, &bystander).await;
        assert_eq!(store.count().await.unwrap(), before + 4);
        let o = owner.clone();
        let found = store
            .find_by(&move |r| r.owner.as_deref() == Some(o.as_str()))
            .await
            .unwrap();
        let mut ids: Vec<_> = found.iter().map(|r| r.id.to_string()).collect();
        ids.sort();
        assert_eq!(ids, want, "find_by returned other sessions or missed some");
        let o = owner.clone();
        let removed = store
            .bulk_delete(&move |r| r.owner.as_deref() == Some(o.as_str()))
            .await
            .unwrap();
        let mut ids: Vec<_> = removed.iter().map(|r| r.handle().to_string()).collect();
        ids.sort();
        assert_eq!(ids, want, "bulk_delete reported other sessions");
        assert!(
            removed
                .iter()
                .all(|r| r.owner.as_deref() == Some(owner.as_str())),
            "bulk_delete must report each session's owner (for on_deleted)"
        );
        assert!(store.by_owner(&owner).await.unwrap().is_empty());
        assert!(
            load(&store, &bystander_cookie).await.is_some(),
            "bulk_delete deleted a session its predicate did not match"
        );
    }

    /// by_owner lists exactly the owner's sessions; delete_owner revokes them all.
    pub async fn owner_index_lists_and_revokes<S: QueryStore<TestData>>(store: S) {
        let (alice, bob) = (unique_owner(), unique_owner());
        let a1 = record(Some(&alice));
        let a2 = record(Some(&alice));
        let b1 = record(Some(&bob));
        let c_a1 = create(&store, &a1).await;
        let c_a2 = create(&store, &a2).await;
        let c_b1 = create(&store, &b1).await;
        let mut ids: Vec<_> = store
            .by_owner(&alice)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id.to_string())
            .collect();
        ids.sort();
        let mut want = vec![a1.id.handle().to_string(), a2.id.handle().to_string()];
        want.sort();
        assert_eq!(ids, want);
        let removed = store.delete_owner(&alice).await.unwrap();
        let mut ids: Vec<_> = removed.iter().map(|r| r.handle().to_string()).collect();
        ids.sort();
        assert_eq!(ids, want, "delete_owner must report the ids it revoked");
        assert!(removed
            .iter()
            .all(|r| r.owner.as_deref() == Some(alice.as_str())));
        assert!(load(&store, &c_a1).await.is_none());
        assert!(load(&store, &c_a2).await.is_none());
        assert!(
            load(&store, &c_b1).await.is_some(),
            "another owner's session must survive"
        );
    }

    /// Changing a session's owner moves it in the index.
    pub async fn owner_change_moves_the_index_entry<S: QueryStore<TestData>>(store: S) {
        let (alice, bob) = (unique_owner(), unique_owner());
        let r = record(Some(&alice));
        let cookie = create(&store, &r).await;
        let mut loaded = load(&store, &cookie).await.unwrap();
        loaded.owner = Some(bob.clone());
        store
            .save(Save {
                record: &loaded,
                base: None,
                kind: SaveKind::Update,
                changes: MetaChanges {
                    owner: true,
                    ..MetaChanges::NONE
                },
                write_id: 0,
            })
            .await
            .unwrap();
        assert!(store.by_owner(&alice).await.unwrap().is_empty());
        assert_eq!(store.by_owner(&bob).await.unwrap().len(), 1);
        assert_eq!(store.delete_owner(&alice).await.unwrap().len(), 0);
        assert!(load(&store, &cookie).await.is_some());
    }

    /// A session past its idle deadline is neither listed nor revoked
    /// (counted) for its owner, whether or not the store removed it yet.
    pub async fn expired_sessions_are_not_revoked<S: QueryStore<TestData>>(store: S) {
        let owner = unique_owner();
        let mut dying = record(Some(&owner));
        dying.idle_deadline = SystemTime::now() + Duration::from_millis(300);
        let live = record(Some(&owner));
        create(&store, &dying).await;
        let live_cookie = create(&store, &live).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(store.by_owner(&owner).await.unwrap().len(), 1);
        let revoked = store.delete_owner(&owner).await.unwrap();
        assert_eq!(
            revoked.iter().map(Removed::handle).collect::<Vec<_>>(),
            vec![live.id.handle()],
            "only the live session is revoked"
        );
        assert!(load(&store, &live_cookie).await.is_none());
    }

    /// The owner index follows the record a store writes, not the record a
    /// request handed in: an owner set by one request survives another's
    /// stale save (merged), moves with a regenerate, and leaves the index
    /// when cleared. A store that indexed the handed-in record would leave
    /// a session no revoke reaches.
    pub async fn owner_index_follows_the_written_record<S: QueryStore<TestData>>(store: S) {
        let ann = unique_owner();
        let cookie = create(&store, &record(None)).await;
        let loaded = load(&store, &cookie).await.unwrap();
        let owner_only = MetaChanges {
            owner: true,
            ..MetaChanges::NONE
        };
        let mut login = loaded.clone();
        login.owner = Some(ann.clone());
        store
            .save(Save::update(&login, None).with_changes(owner_only))
            .await
            .unwrap();
        // A request that loaded the session before the login saves data.
        let mut stale = loaded.clone();
        stale.data.counter = 7;
        store
            .save(Save::update(&stale, Some(&loaded.data)))
            .await
            .unwrap();
        let ids = |records: Vec<Record<TestData, SessionHandle>>| {
            records.iter().map(|r| r.id).collect::<Vec<_>>()
        };
        assert_eq!(
            ids(store.by_owner(&ann).await.unwrap()),
            [loaded.id.handle()]
        );
        let current = load(&store, &cookie).await.unwrap();
        assert_eq!(current.owner.as_deref(), Some(ann.as_str()));
        let mut moved = current.clone();
        moved.id = SessionId::generate();
        store
            .save(Save::regenerate(&moved, current.id, None))
            .await
            .unwrap();
        assert_eq!(
            ids(store.by_owner(&ann).await.unwrap()),
            [moved.id.handle()]
        );
        let mut cleared = load(&store, &moved.id.encode()).await.unwrap();
        cleared.owner = None;
        store
            .save(Save::update(&cleared, None).with_changes(owner_only))
            .await
            .unwrap();
        assert!(store.by_owner(&ann).await.unwrap().is_empty());
        assert!(store.delete_owner(&ann).await.unwrap().is_empty());
        assert!(load(&store, &moved.id.encode()).await.is_some());
    }

    /// Owners are opaque strings matched exactly: no patterns, no case
    /// folding, no prefixes (a store keyed by owner text must escape it).
    pub async fn owner_names_are_matched_exactly<S: QueryStore<TestData>>(store: S) {
        let base = unique_owner();
        let names: Vec<String> = ["", "*", ":x", "%", "_", " ", "?", "[a]", "\u{e9}"]
            .iter()
            .map(|suffix| format!("{base}{suffix}"))
            .chain([base.to_uppercase()])
            .collect();
        for name in &names {
            create(&store, &record(Some(name))).await;
        }
        for name in &names {
            let listed = store.by_owner(name).await.unwrap();
            assert_eq!(listed.len(), 1, "by_owner({name:?})");
            assert_eq!(listed[0].owner.as_deref(), Some(name.as_str()));
        }
        for pattern in ["*", "%", "", "owner-*"] {
            assert!(
                store.delete_owner(pattern).await.unwrap().is_empty(),
                "delete_owner({pattern:?}) took another owner's sessions"
            );
        }
        let star = format!("{base}*");
        assert_eq!(store.delete_owner(&star).await.unwrap().len(), 1);
        for name in names.iter().filter(|n| **n != star) {
            assert_eq!(store.by_owner(name).await.unwrap().len(), 1, "{name:?}");
        }
    }

    /// Sessions past a deadline are out of `count`, `iter`, `find_by` and
    /// `bulk_delete`, whether or not the store has removed them yet.
    pub async fn expired_sessions_are_out_of_every_listing<S: QueryStore<TestData>>(store: S) {
        use futures_util::StreamExt;
        let owner = unique_owner();
        let before = store.count().await.unwrap();
        let soon = SystemTime::now() + Duration::from_millis(300);
        let mut idle = record(Some(&owner));
        idle.idle_deadline = soon;
        let mut old = record(Some(&owner));
        old.absolute_deadline = soon;
        old.idle_deadline = soon;
        let live = record(Some(&owner));
        for r in [&idle, &old, &live] {
            create(&store, r).await;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(store.count().await.unwrap(), before + 1, "count");
        let o = owner.clone();
        let found = store
            .find_by(&move |r| r.owner.as_deref() == Some(o.as_str()))
            .await
            .unwrap();
        assert_eq!(
            found.iter().map(|r| r.id).collect::<Vec<_>>(),
            [live.id.handle()]
        );
        let listed: Vec<SessionHandle> = store
            .iter()
            .filter_map(|r| async move { r.ok().map(|r| r.id) })
            .collect()
            .await;
        assert!(listed.contains(&live.id.handle()));
        assert!(
            !listed.contains(&idle.id.handle()),
            "iter listed an idle-expired session"
        );
        assert!(
            !listed.contains(&old.id.handle()),
            "iter listed a session past its lifetime"
        );
        let o = owner.clone();
        let removed = store
            .bulk_delete(&move |r| r.owner.as_deref() == Some(o.as_str()))
            .await
            .unwrap();
        assert_eq!(
            removed.iter().map(Removed::handle).collect::<Vec<_>>(),
            [live.id.handle()]
        );
    }

    /// A revoke racing a regenerate of one of the owner's sessions (a login
    /// finishing while "log out everywhere" runs) leaves the session under
    /// neither id.
    pub async fn a_revoke_racing_a_regenerate_leaves_neither_id<S: QueryStore<TestData>>(store: S) {
        let store = std::sync::Arc::new(store);
        for round in 0..20 {
            let owner = unique_owner();
            let r = record(Some(&owner));
            let cookie = create(&*store, &r).await;
            let loaded = load(&*store, &cookie).await.unwrap();
            let mut moved = loaded.clone();
            moved.id = SessionId::generate();
            let regenerate = {
                let (store, moved) = (store.clone(), moved.clone());
                tokio::spawn(async move {
                    store
                        .save(Save::regenerate(&moved, loaded.id, None))
                        .await
                        .unwrap()
                })
            };
            let revoke = {
                let store = store.clone();
                tokio::spawn(async move { store.delete_owner(&owner).await.unwrap() })
            };
            let (_, removed) = (regenerate.await.unwrap(), revoke.await.unwrap());
            assert!(load(&*store, &cookie).await.is_none(), "round {round}");
            assert!(
                load(&*store, &moved.id.encode()).await.is_none(),
                "round {round}: the regenerated session escaped the revoke ({removed:?})"
            );
        }
    }

    /// Deletes, revokes and bulk deletes of the same sessions running at
    /// once report each session removed exactly once (every report fires an
    /// `on_deleted`: none missing from an audit log, none twice).
    pub async fn concurrent_removals_report_each_session_once<S: QueryStore<TestData>>(store: S) {
        let store = std::sync::Arc::new(store);
        let owner = unique_owner();
        let mut ids = Vec::new();
        for _ in 0..20 {
            let r = record(Some(&owner));
            create(&*store, &r).await;
            ids.push(r.id);
        }
        let revoke = || {
            let (store, owner) = (store.clone(), owner.clone());
            tokio::spawn(async move {
                let removed = store.delete_owner(&owner).await.unwrap();
                removed.iter().map(Removed::handle).collect::<Vec<_>>()
            })
        };
        let bulk = {
            let (store, owner) = (store.clone(), owner.clone());
            tokio::spawn(async move {
                let removed = store
                    .bulk_delete(&move |r| r.owner.as_deref() == Some(owner.as_str()))
                    .await
                    .unwrap();
                removed.iter().map(Removed::handle).collect::<Vec<_>>()
            })
        };
        let one_by_one = {
            let (store, ids) = (store.clone(), ids.clone());
            tokio::spawn(async move {
                // By id and by handle, alternately.
                let mut removed = Vec::new();
                for (i, id) in ids.into_iter().rev().enumerate() {
                    let handle = id.handle();
                    let existed = match i % 2 {
                        0 => store.delete(&id).await.unwrap(),
                        _ => store.delete_handle(&handle).await.unwrap(),
                    };
                    if existed {
                        removed.push(handle);
                    }
                }
                removed
            })
        };
        let mut reported = Vec::new();
        for task in [revoke(), revoke(), bulk, one_by_one] {
            reported.extend(task.await.unwrap());
        }
        reported.sort_by_key(|h| h.to_string());
        let mut handles: Vec<SessionHandle> = ids.iter().map(SessionId::handle).collect();
        handles.sort_by_key(|h| h.to_string());
        assert_eq!(
            reported, handles,
            "each session reported removed exactly once"
        );
    }

    /// Deleting a session removes it from its owner's index.
    pub async fn deleted_sessions_leave_the_owner_index<S: QueryStore<TestData>>(store: S) {
        let owner = unique_owner();
        let r = record(Some(&owner));
        create(&store, &r).await;
        store.delete(&r.id).await.unwrap();
        assert!(store.by_owner(&owner).await.unwrap().is_empty());
        // Not merely filtered out of the listing: nothing left to revoke.
        assert!(store.delete_owner(&owner).await.unwrap().is_empty());
        // Likewise a session a logout deleted under the id a regenerate
        // moved it to.
        let cookie = create(&store, &record(Some(&owner))).await;
        let r = load(&store, &cookie).await.unwrap();
        let mut moved = r.clone();
        moved.id = SessionId::generate();
        let out = store.save(Save::regenerate(&moved, r.id, None)).await;
        assert!(matches!(out, Ok(SaveOutcome::Saved(_))), "{out:?}");
        assert!(store.delete_following(&r.id).await.unwrap().deleted());
        assert!(store.by_owner(&owner).await.unwrap().is_empty());
        assert!(store.delete_owner(&owner).await.unwrap().is_empty());
    }

    /// A listed session is deleted by its handle, from the store and its
    /// owner's index, for good: a request that loaded it before cannot
    /// save it back. The handle is no cookie: sent as one, it loads nothing.
    pub async fn a_listed_session_is_deleted_by_its_handle<S: QueryStore<TestData>>(store: S) {
        let owner = unique_owner();
        let kept = record(Some(&owner));
        let kept_cookie = create(&store, &kept).await;
        let cookie = create(&store, &record(Some(&owner))).await;
        let loaded = load(&store, &cookie).await.unwrap();
        let listed = store.by_owner(&owner).await.unwrap();
        assert_eq!(listed.len(), 2);
        let target = listed
            .iter()
            .find(|r| r.id == loaded.id.handle())
            .expect("listed by its handle");
        assert_eq!(target.owner.as_deref(), Some(owner.as_str()));
        assert_eq!(target.data, loaded.data);
        for text in [target.id.to_string(), target.id.to_string().to_uppercase()] {
            assert!(
                load(&store, &text).await.is_none(),
                "a handle loaded a session"
            );
        }
        assert!(store.delete_handle(&target.id).await.unwrap());
        assert!(load(&store, &cookie).await.is_none());
        let mut stale = loaded.clone();
        stale.data.counter += 1;
        let out = store.save(Save::update(&stale, Some(&loaded.data))).await;
        assert!(
            matches!(out, Ok(SaveOutcome::Gone)),
            "a save after the delete must not bring the session back: {out:?}"
        );
        assert!(load(&store, &cookie).await.is_none());
        assert!(!store.delete_handle(&target.id).await.unwrap());
        assert!(!store
            .delete_handle(&SessionId::generate().handle())
            .await
            .unwrap());
        let left = store.by_owner(&owner).await.unwrap();
        assert_eq!(
            left.iter().map(|r| r.id).collect::<Vec<_>>(),
            [kept.id.handle()]
        );
        assert!(load(&store, &kept_cookie).await.is_some());

        // By owner and handle ("sign out that device"): under another
        // owner's name, nothing; nor once the session changed owner.
        let kept_handle = kept.id.handle();
        let other = unique_owner();
        assert!(!store.delete_handle_of(&other, &kept_handle).await.unwrap());
        let loaded = load(&store, &kept_cookie).await.expect("still there");
        let mut moved = loaded.clone();
        moved.owner = Some(other.clone());
        let out = store.save(Save::update(&moved, Some(&loaded.data))).await;
        assert!(matches!(out, Ok(SaveOutcome::Kept)), "{out:?}");
        assert!(!store.delete_handle_of(&owner, &kept_handle).await.unwrap());
        assert!(load(&store, &kept_cookie).await.is_some());
        assert!(store.delete_handle_of(&other, &kept_handle).await.unwrap());
        assert!(load(&store, &kept_cookie).await.is_none());
        assert!(!store.delete_handle_of(&other, &kept_handle).await.unwrap());
    }
}

/// Generates one `#[tokio::test]` per case of [`cases`](crate::testing::cases) in a module `$name`.
#[macro_export]
macro_rules! store_conformance_tests {
    ($name:ident, $make:expr) => {
        $crate::__conformance_module!($name, $make, cases: [
            created_session_loads_back_intact,
            unknown_and_hostile_values_load_as_none,
            update_replaces_data,
            synchronous_saves_are_ordinary_saves,
            regenerate_answers_the_new_id_with_every_field,
            tampered_values_load_as_none,
            saved_values_are_cookie_octets,
            any_text_round_trips_and_large_data_is_refused_or_kept,
        ]);
    };
}

/// Generates one `#[tokio::test]` per case of [`server_cases`](crate::testing::server_cases) in a module `$name`.
#[macro_export]
macro_rules! server_store_conformance_tests {
    ($name:ident, $make:expr) => {
        $crate::__conformance_module!($name, $make, server_cases: [
            cookie_value_is_the_session_id,
            create_never_overwrites,
            delete_removes_the_session,
            update_after_delete_does_not_resurrect,
            regenerate_moves_the_session_to_a_new_id,
            regenerate_after_delete_is_gone,
            concurrent_updates_of_different_fields_both_survive,
            racing_updates_and_a_delete_never_resurrect,
            racing_updates_of_different_fields_all_survive,
            racing_creates_of_one_id_save_once,
            concurrent_flash_and_owner_changes_both_survive,
            regenerate_keeps_a_concurrent_update,
            a_session_past_its_deadline_is_not_written_back,
            an_update_moves_the_deadline_the_store_keeps,
            synchronous_saves_keep_the_rules,
            versions_increase_on_every_write,
            a_stale_write_keeps_what_it_did_not_change,
            regenerate_carries_every_field,
            a_repeated_update_sets_its_flash_once,
            a_regenerate_never_leaves_the_session_under_neither_id,
            a_logout_racing_a_regenerate_ends_the_moved_session,
        ]);
    };
}

/// Generates one `#[tokio::test]` per case of [`query_cases`](crate::testing::query_cases) in a module `$name`.
#[macro_export]
macro_rules! query_store_conformance_tests {
    ($name:ident, $make:expr) => {
        $crate::__conformance_module!($name, $make, query_cases: [
            find_count_and_bulk_delete,
            owner_index_lists_and_revokes,
            owner_change_moves_the_index_entry,
            expired_sessions_are_not_revoked,
            deleted_sessions_leave_the_owner_index,
            owner_index_follows_the_written_record,
            owner_names_are_matched_exactly,
            expired_sessions_are_out_of_every_listing,
            concurrent_removals_report_each_session_once,
            a_revoke_racing_a_regenerate_leaves_neither_id,
            a_listed_session_is_deleted_by_its_handle,
        ]);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_module {
    ($name:ident, $make:expr, $group:ident: [$($case:ident),* $(,)?]) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let store = $make.await;
                    $crate::testing::$group::$case(store).await;
                }
            )*
        }
    };
}
