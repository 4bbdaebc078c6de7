//! `RedisStore` behaviours beyond the conformance suite, against a real
//! `redis-server` started by the tests: round trips counted by the server,
//! hostile ids, concurrent requests, logout races, TTLs, key layout, faults.
//!
//! Tests that read the server's command statistics or restart it get a server
//! of their own; the others share one and use their own key prefix.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sessionkit::store::redis::RedisStore;
use sessionkit::store::{QueryStore, Save, SaveOutcome, Store};
use sessionkit::testing::redis_server::RedisServer;
use sessionkit::{Config, Record, SessionId, Sessions, StoreError};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Wide {
    f0: u32,
    f1: u32,
    f2: u32,
    f3: u32,
    f4: u32,
    f5: u32,
    f6: u32,
    f7: u32,
    user: Option<String>,
}

impl Wide {
    fn set(&mut self, field: usize, v: u32) {
        *[
            &mut self.f0,
            &mut self.f1,
            &mut self.f2,
            &mut self.f3,
            &mut self.f4,
            &mut self.f5,
            &mut self.f6,
            &mut self.f7,
        ][field] = v;
    }
}

fn shared() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::start().unwrap_or_else(|e| panic!("{e}")))
}

fn unique_prefix() -> String {
    format!("t-{}:", &SessionId::generate().storage_key()[..12])
}

async fn store_on(server: &RedisServer) -> RedisStore<Wide> {
    RedisStore::builder(server.url())
        .key_prefix(unique_prefix())
        .connect()
        .await
        .expect("connect")
}

fn new_record(owner: Option<&str>) -> Record<Wide> {
    let mut r = Record::new(
        SessionId::generate(),
        Wide::default(),
        SystemTime::now(),
        Config::default().expiry(),
    );
    r.owner = owner.map(str::to_owned);
    r
}

async fn try_create(store: &RedisStore<Wide>, r: &Record<Wide>) -> Result<SaveOutcome, StoreError> {
    store.save(Save::create(r)).await
}

async fn create(store: &RedisStore<Wide>, r: &Record<Wide>) -> String {
    match try_create(store, r).await {
        Ok(SaveOutcome::Saved(c)) => c,
        other => panic!("create failed: {other:?}"),
    }
}

/// Saves `mine`, loaded as `base`, as an update.
async fn update(
    store: &RedisStore<Wide>,
    mine: &Record<Wide>,
    base: &Wide,
) -> Result<SaveOutcome, StoreError> {
    store.save(Save::update(mine, Some(base))).await
}

/// Starts a session through the core, changed by `f`; its cookie.
async fn first_cookie<S: Store<Wide>>(
    sessions: &Sessions<Wide, S>,
    f: impl FnOnce(&mut Wide),
) -> String {
    let first = sessions.load(None).await.unwrap();
    f(&mut first.data_mut());
    let action = sessions.commit(&first, None).await.unwrap();
    action.value().expect("a new session's cookie").to_owned()
}

/// `INFO commandstats` as command name → calls.
fn command_stats(server: &RedisServer) -> BTreeMap<String, u64> {
    let info = server.command("INFO commandstats").unwrap();
    info.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("cmdstat_")?;
            let (name, stats) = rest.split_once(':')?;
            let calls = stats
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// Commands other than the ones the test itself sends to read statistics.
fn store_commands(server: &RedisServer) -> BTreeMap<String, u64> {
    let mut stats = command_stats(server);
    stats.remove("info");
    stats.remove("config|resetstat");
    stats.remove("quit");
    stats
}

fn reset_stats(server: &RedisServer) {
    server.command("CONFIG RESETSTAT").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_is_one_get_and_a_save_is_one_evalsha() {
    let server = RedisServer::start().unwrap();
    let store = store_on(&server).await;
    let mut records = Vec::new();
    for _ in 0..5 {
        let r = new_record(Some("round-trips"));
        create(&store, &r).await;
        records.push(r);
    }

    reset_stats(&server);
    for r in &records {
        assert!(store.load(&r.id.encode()).await.unwrap().is_some());
    }
    let stats = store_commands(&server);
    assert_eq!(stats, BTreeMap::from([("get".to_owned(), 5)]), "{stats:?}");

    reset_stats(&server);
    for r in &records {
        let mut loaded = store.load(&r.id.encode()).await.unwrap().unwrap();
        let base = loaded.data.clone();
        loaded.data.f0 = 1;
        let out = update(&store, &loaded, &base).await.unwrap();
        // An update keeps the cookie (the id): nothing to encode or send.
        assert_eq!(out, SaveOutcome::Kept);
    }
    let stats = store_commands(&server);
    // Five loads (GET) and five saves (EVALSHA). Every other command ran
    // inside the scripts: one GET and one SET per update, plus the index.
    assert_eq!(stats.get("evalsha"), Some(&5), "{stats:?}");
    assert_eq!(
        stats.get("get"),
        Some(&10),
        "5 loads + 1 GET in each script"
    );
    assert_eq!(stats.get("set"), Some(&5));
    for top_level_only in ["eval", "script|load", "mget", "scan", "exists", "getex"] {
        assert!(!stats.contains_key(top_level_only), "{stats:?}");
    }

    reset_stats(&server);
    let fresh = new_record(None);
    create(&store, &fresh).await;
    assert_eq!(
        store_commands(&server),
        BTreeMap::from([("set".to_owned(), 1)]),
        "an anonymous create is one plain SET NX, no script"
    );
    reset_stats(&server);
    create(&store, &new_record(Some("ada"))).await;
    let stats = store_commands(&server);
    assert_eq!(
        stats.get("evalsha"),
        Some(&1),
        "an owned create keeps its index: {stats:?}"
    );
    assert_eq!(stats.get("sadd"), Some(&1), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_create_writes_what_the_script_would_and_never_replaces_a_key() {
    let server = shared();
    let store = store_on(server).await;
    let mut r = new_record(None);
    r.idle_deadline = SystemTime::now() + Duration::from_secs(100);
    create(&store, &r).await;
    let key = store.key_of(&r.id);
    // The same header the scripts write and read: version 1, no owner.
    let header = server.command(&format!("GETRANGE {key} 0 6")).unwrap();
    assert!(header.ends_with("\r\nsk1:1::\r\n"), "{header:?}");
    let reply = server.command(&format!("PTTL {key}")).unwrap();
    let ttl: i64 = reply.trim().trim_start_matches(':').parse().unwrap();
    assert!((95_000..=100_000).contains(&ttl), "{ttl}");
    // It is an ordinary session afterwards: updates run the script on it.
    let mut loaded = store.load(&r.id.encode()).await.unwrap().unwrap();
    assert_eq!(loaded.version, 1);
    let base = loaded.data.clone();
    loaded.data.f0 = 9;
    assert!(matches!(
        update(&store, &loaded, &base).await,
        Ok(SaveOutcome::Kept)
    ));
    // A second create under the same id is a collision, never an overwrite.
    let again = try_create(&store, &r).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let kept = store.load(&r.id.encode()).await.unwrap().unwrap();
    assert_eq!((kept.data.f0, kept.version), (9, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_cookie_values_never_reach_redis() {
    let server = RedisServer::start().unwrap();
    let store = store_on(&server).await;
    reset_stats(&server);
    let long = "A".repeat(10_000);
    let star43 = "*".repeat(43);
    let crlf43 = format!("{}\r\nFLUSHALL\r\n", "A".repeat(30));
    for hostile in [
        "*",
        "sessionkit:*",
        star43.as_str(),
        "abc\r\nFLUSHALL\r\n",
        crlf43.as_str(),
        long.as_str(),
        "",
        "\0",
    ] {
        assert!(store.load(hostile).await.unwrap().is_none());
    }
    let stats = store_commands(&server);
    assert!(stats.is_empty(), "commands reached Redis: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_requests_changing_different_fields_all_survive() {
    let store = store_on(shared()).await;
    let r = new_record(None);
    let cookie = create(&store, &r).await;
    for round in 1..=5u32 {
        // Eight requests load the same version, then save concurrently.
        let loaded = store.load(&cookie).await.unwrap().unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|field| {
                let store = store.clone();
                let loaded = loaded.clone();
                tokio::spawn(async move {
                    let mut mine = loaded.clone();
                    mine.data.set(field, round * 100 + field as u32);
                    update(&store, &mine, &loaded.data).await
                })
            })
            .collect();
        for t in tasks {
            assert!(matches!(t.await.unwrap(), Ok(SaveOutcome::Kept)));
        }
        let got = store.load(&cookie).await.unwrap().unwrap();
        let mut want = Wide::default();
        for field in 0..8 {
            want.set(field, round * 100 + field as u32);
        }
        assert_eq!(got.data, want, "round {round}: a change was lost");
        assert_eq!(got.version, loaded.version + 8);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_requests_through_the_core_keep_both_changes() {
    let store = store_on(shared()).await;
    let sessions = Sessions::new(store, Config::default());
    let cookie = first_cookie(&sessions, |d| d.f0 = 1).await;

    let a = sessions.load(Some(&cookie)).await.unwrap();
    let b = sessions.load(Some(&cookie)).await.unwrap();
    a.data_mut().f1 = 11;
    b.data_mut().user = Some("bob".into());
    let (ra, rb) = tokio::join!(
        sessions.commit(&a, Some(&cookie)),
        sessions.commit(&b, Some(&cookie))
    );
    ra.unwrap();
    rb.unwrap();

    let after = sessions.load(Some(&cookie)).await.unwrap();
    assert!(!after.is_new());
    let data = after.data().clone();
    assert_eq!(
        (data.f0, data.f1, data.user.as_deref()),
        (1, 11, Some("bob"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_field_changed_twice_keeps_the_last_write() {
    let store = store_on(shared()).await;
    let r = new_record(None);
    let cookie = create(&store, &r).await;
    let loaded = store.load(&cookie).await.unwrap().unwrap();
    for v in [5, 7] {
        let mut mine = loaded.clone();
        mine.data.f3 = v;
        update(&store, &mine, &loaded.data).await.unwrap();
    }
    assert_eq!(store.load(&cookie).await.unwrap().unwrap().data.f3, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_saving_after_logout_leaves_the_session_deleted() {
    let store = store_on(shared()).await;
    let sessions = Sessions::new(store.clone(), Config::default());
    let login = sessions.load(None).await.unwrap();
    login.set_owner(Some("slow-user"));
    login.data_mut().user = Some("slow-user".into());
    let cookie = sessions
        .commit(&login, None)
        .await
        .unwrap()
        .value()
        .unwrap()
        .to_owned();

    // The slow request loads first and works for a while...
    let slow = sessions.load(Some(&cookie)).await.unwrap();
    let slow_task = {
        let sessions = sessions.clone();
        let cookie = cookie.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            slow.data_mut().f5 = 55;
            sessions.commit(&slow, Some(&cookie)).await
        })
    };
    // ...meanwhile the user logs out.
    let logout = sessions.load(Some(&cookie)).await.unwrap();
    logout.destroy();
    sessions.commit(&logout, Some(&cookie)).await.unwrap();

    slow_task.await.unwrap().unwrap();
    assert!(store.load(&cookie).await.unwrap().is_none(), "resurrected");
    assert!(store.by_owner("slow-user").await.unwrap().is_empty());
    assert!(sessions.load(Some(&cookie)).await.unwrap().is_new());
}

/// A request that loads a session just before its idle deadline and saves
/// after it keeps its change, with Redis' own key expiry (real time): the
/// load recorded the activity, which moved the key's TTL, before the handler
/// ran. Without that, the key is gone when the save comes and the change is
/// dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_running_across_the_idle_deadline_keeps_its_change() {
    let store = store_on(shared()).await;
    let config = Config::builder()
        .idle_timeout(Duration::from_secs(4))
        .request_allowance(Duration::from_secs(2))
        .build()
        .unwrap();
    let sessions = Sessions::new(store.clone(), config);
    let cookie = first_cookie(&sessions, |d| d.f1 = 1).await;
    // About 1.5 s left: within the allowance.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let slow = sessions.load(Some(&cookie)).await.unwrap();
    assert_eq!(slow.data().f1, 1, "alive when loaded");
    let pttl = |key: String| {
        let reply = shared().command(&format!("PTTL {key}")).unwrap();
        reply.trim().trim_start_matches(':').parse::<i64>().unwrap()
    };
    let key = store.key_of(&slow.id());
    assert!(pttl(key.clone()) > 3_000, "the load moved the key's TTL");
    // The handler outlives the deadline the session had when loaded.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    slow.data_mut().f2 = 2;
    sessions.commit(&slow, Some(&cookie)).await.unwrap();
    let after = sessions.load(Some(&cookie)).await.unwrap();
    assert!(!after.is_new(), "the session lived on");
    assert_eq!(
        (after.data().f1, after.data().f2),
        (1, 2),
        "the change was kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_hashes_and_a_key_dump_holds_no_cookie_value() {
    let server = shared();
    let store = store_on(server).await;
    let r = new_record(Some("dump-owner"));
    let cookie = create(&store, &r).await;
    let keys = server
        .command(&format!("KEYS {}*", store.key_prefix()))
        .unwrap();
    assert!(keys.contains(&store.key_of(&r.id)));
    assert!(keys.contains(&store.owner_key_of("dump-owner")));
    assert!(!keys.contains(&cookie), "a key holds the cookie value");
    assert!(
        !keys.contains("dump-owner"),
        "a key holds the owner in clear"
    );
    assert_eq!(
        store.key_of(&r.id),
        format!("{}{}", store.key_prefix(), r.id.storage_key())
    );
}

/// A dump of everything the store wrote (every value, owner set and move
/// marker, after creates with and without an owner, an update with flash
/// messages and a regenerate) holds no session id, raw or as its cookie:
/// values name sessions by handle only. The listing still finds them, and
/// a revoke by handle ends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_of_every_value_holds_no_session_id() {
    let server = shared();
    let store = store_on(server).await;
    let anonymous = new_record(None);
    create(&store, &anonymous).await;
    let owned = new_record(Some("dump-ann"));
    let cookie = create(&store, &owned).await;
    let mut loaded = store.load(&cookie).await.unwrap().unwrap();
    loaded.data.user = Some("ann".into());
    loaded.flash.push(sessionkit::flash::FlashMessage {
        key: "notice".into(),
        value: "welcome".into(),
    });
    let out = store.save(Save::update(&loaded, None)).await.unwrap();
    assert!(matches!(out, SaveOutcome::Kept), "{out:?}");
    let loaded = store.load(&cookie).await.unwrap().unwrap();
    let mut moved = loaded.clone();
    moved.id = SessionId::generate();
    let out = store
        .save(Save::regenerate(&moved, loaded.id, None))
        .await
        .unwrap();
    assert!(matches!(out, SaveOutcome::Saved(_)), "{out:?}");

    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", store.key_prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        keys.len() >= 4,
        "values, the owner set, a move marker: {keys:?}"
    );
    let mut dump: Vec<u8> = Vec::new();
    for key in &keys {
        dump.extend_from_slice(key.as_bytes());
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let parts: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![redis::cmd("GET")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap()],
            "set" => redis::cmd("SMEMBERS")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap(),
            other => panic!("unexpected key type {other}"),
        };
        for part in parts {
            dump.extend_from_slice(&part);
        }
    }
    assert!(
        dump.windows(6).any(|w| w == b"notice"),
        "the dump holds the session data (the check reads values)"
    );
    for id in [anonymous.id, owned.id, moved.id] {
        assert!(
            !dump.windows(32).any(|w| w == id.as_bytes()),
            "a value holds a raw session id"
        );
        let encoded = id.encode();
        assert!(
            !dump.windows(encoded.len()).any(|w| w == encoded.as_bytes()),
            "a value holds a cookie"
        );
    }
    // Listed by handle; revoked by handle.
    let listed = store.by_owner("dump-ann").await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [moved.id.handle()]
    );
    assert_eq!(listed[0].data.user.as_deref(), Some("ann"));
    assert!(store.delete_handle(&listed[0].id).await.unwrap());
    assert!(store.load(&moved.id.encode()).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_ttl_is_the_remaining_lifetime_and_the_owner_set_outlives_it() {
    let server = shared();
    let store = store_on(server).await;
    let mut short = new_record(Some("ttl-owner"));
    short.idle_deadline = SystemTime::now() + Duration::from_secs(100);
    let mut long = new_record(Some("ttl-owner"));
    long.idle_deadline = SystemTime::now() + Duration::from_secs(1000);
    create(&store, &long).await;
    create(&store, &short).await;
    let pttl = |key: String| -> i64 {
        let reply = server.command(&format!("PTTL {key}")).unwrap();
        reply.trim().trim_start_matches(':').parse().unwrap()
    };
    let short_ttl = pttl(store.key_of(&short.id));
    assert!((95_000..=100_000).contains(&short_ttl), "{short_ttl}");
    let long_ttl = pttl(store.key_of(&long.id));
    assert!((995_000..=1_000_000).contains(&long_ttl), "{long_ttl}");
    // The set lives as long as its longest session, whatever the write order.
    let set_ttl = pttl(store.owner_key_of("ttl-owner"));
    assert!(set_ttl >= long_ttl - 1_000, "{set_ttl} < {long_ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_record_vanishes_from_redis_at_its_deadline() {
    let store = store_on(shared()).await;
    let mut r = new_record(None);
    r.idle_deadline = SystemTime::now() + Duration::from_millis(200);
    let cookie = create(&store, &r).await;
    assert!(store.load(&cookie).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(store.load(&cookie).await.unwrap().is_none());
    assert_eq!(store.count().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_owner_index_entries_are_dropped_when_listing() {
    let server = shared();
    let store = store_on(server).await;
    let live = new_record(Some("stale-owner"));
    let gone = new_record(Some("stale-owner"));
    create(&store, &live).await;
    create(&store, &gone).await;
    // The record vanishes behind the store's back (like a TTL expiry).
    server
        .command(&format!("DEL {}", store.key_of(&gone.id)))
        .unwrap();
    let listed = store.by_owner("stale-owner").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, live.id.handle());
    let card = server
        .command(&format!("SCARD {}", store.owner_key_of("stale-owner")))
        .unwrap();
    assert_eq!(card.trim(), ":1", "the stale member was not removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_index_stays_bounded_when_sessions_expire_unlisted() {
    // An owner who logs in again and again and never logs out (or an API
    // client that never keeps its cookie): each session expires by TTL,
    // nothing ever lists or revokes the owner, yet the set must not keep
    // every dead session. Each new member checks three random others.
    let server = shared();
    let store = store_on(server).await;
    let scard = || -> usize {
        let reply = server
            .command(&format!("SCARD {}", store.owner_key_of("busy-owner")))
            .unwrap();
        reply.trim().trim_start_matches(':').parse().unwrap()
    };
    // One long-lived session keeps the set itself alive (it expires with
    // the owner's longest-lived session).
    create(&store, &new_record(Some("busy-owner"))).await;
    for _ in 0..200 {
        let mut r = new_record(Some("busy-owner"));
        r.idle_deadline = SystemTime::now() + Duration::from_millis(300);
        create(&store, &r).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..200 {
        create(&store, &new_record(Some("busy-owner"))).await;
    }
    // Without pruning: 401. With it, the 200 dead ones mostly gone (the
    // expected remainder is a few; 50 leaves a wide margin for chance).
    let card = scard();
    assert!(
        (201..251).contains(&card),
        "{card} members for 201 live sessions"
    );
    // Nothing live was dropped: every live session is listed and revoked.
    assert_eq!(store.by_owner("busy-owner").await.unwrap().len(), 201);
    assert_eq!(store.delete_owner("busy-owner").await.unwrap().len(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regenerate_moves_the_owner_index_entry_to_the_new_id() {
    let store = store_on(shared()).await;
    let r = new_record(Some("regen-owner"));
    let old_cookie = create(&store, &r).await;
    let mut loaded = store.load(&old_cookie).await.unwrap().unwrap();
    loaded.id = SessionId::generate();
    store
        .save(Save::regenerate(&loaded, r.id, None))
        .await
        .unwrap();
    let ids: Vec<_> = store
        .by_owner("regen-owner")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec![loaded.id.handle()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_stored_value_is_an_error_never_a_panic_and_is_not_overwritten() {
    let server = shared();
    let store = store_on(server).await;
    let r = new_record(None);
    let cookie = create(&store, &r).await;
    let key = store.key_of(&r.id);
    for junk in ["garbage", "sk1:1::{not json", "sk1:x::{}", "sk1:1:zz:{}"] {
        server.command(&format!("SET {key} \"{junk}\"")).unwrap();
        let err = store.load(&cookie).await.unwrap_err();
        assert!(matches!(err, StoreError::Decode(_)), "{err:?}");
        assert!(!err.to_string().contains("not json"));
    }
    // An update of an unreadable record fails and leaves it for inspection.
    let out = store.save(Save::update(&r, None)).await;
    assert!(matches!(out, Err(StoreError::Decode(_))), "{out:?}");
    assert_eq!(
        server
            .command(&format!("GET {key}"))
            .unwrap()
            .lines()
            .nth(1),
        Some("sk1:1:zz:{}")
    );
    // Listing skips it instead of failing for every other session.
    let other = new_record(None);
    create(&store, &other).await;
    let listed = store.find_by(&|_| true).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, other.id.handle());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_key_that_is_not_utf8_does_not_block_listing() {
    let server = shared();
    let store = store_on(server).await;
    let r = new_record(None);
    create(&store, &r).await;
    let junk = format!("{}\\xff\\xfe", store.key_prefix());
    server.command(&format!("SET \"{junk}\" x")).unwrap();
    assert_eq!(store.count().await.unwrap(), 1);
    let listed = store.find_by(&|_| true).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, r.id.handle());
}

/// A session key holding no string (a hash some other tool wrote under the
/// prefix) is no session: a load starts fresh instead of failing every
/// request with its cookie, and a revoke, a listing or a delete goes past
/// it (the scripts' `GET` raised `WRONGTYPE` and ended them half done).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_key_of_another_type_is_no_session_and_blocks_no_revoke() {
    let server = shared();
    let store = store_on(server).await;
    let hashed = |store: &RedisStore<Wide>, r: &Record<Wide>| {
        let key = store.key_of(&r.id);
        server.command(&format!("DEL {key}")).unwrap();
        server.command(&format!("HSET {key} f v")).unwrap();
        key
    };
    let (a, b) = (new_record(Some("ann")), new_record(Some("ann")));
    let cookie_a = create(&store, &a).await;
    create(&store, &b).await;
    let key_a = hashed(&store, &a);
    let err = store.load(&cookie_a).await.unwrap_err();
    assert!(matches!(err, StoreError::Decode(_)), "{err:?}");
    assert!(!store.delete(&a.id).await.unwrap(), "not a session of ours");
    let revoked = store.delete_owner("ann").await.unwrap();
    assert_eq!(
        revoked.iter().map(|r| r.handle()).collect::<Vec<_>>(),
        [b.id.handle()]
    );
    assert!(store.load(&b.id.encode()).await.unwrap().is_none());
    assert!(server
        .command(&format!("TYPE {key_a}"))
        .unwrap()
        .contains("hash"));
    // A listing drops such a member from the owner's set and lists the rest.
    let (c, d) = (new_record(Some("bob")), new_record(Some("bob")));
    create(&store, &c).await;
    create(&store, &d).await;
    hashed(&store, &c);
    let listed = store.by_owner("bob").await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [d.id.handle()]
    );
    let members = server
        .command(&format!("SCARD {}", store.owner_key_of("bob")))
        .unwrap();
    assert!(members.starts_with(":1"), "{members:?}");
}

/// An owner set member that is not UTF-8 (written by something else) is
/// skipped by the listing, not a failure of the whole listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_set_member_that_is_not_utf8_does_not_block_the_listing() {
    let server = shared();
    let store = store_on(server).await;
    let r = new_record(Some("cy"));
    create(&store, &r).await;
    let set = store.owner_key_of("cy");
    server
        .command(&format!("SADD {set} \"\\xff\\xfe\""))
        .unwrap();
    let listed = store.by_owner("cy").await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [r.id.handle()]
    );
    assert_eq!(store.delete_owner("cy").await.unwrap().len(), 1);
}

/// A stored version past 2^63 (the scripts once answered the version they
/// wrote as a Lua number, which Redis turned into a negative integer: the
/// save landed, and was reported as failed) updates like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_past_two_to_the_63_still_updates() {
    let server = shared();
    let store = store_on(server).await;
    let r = new_record(None);
    let cookie = create(&store, &r).await;
    let key = store.key_of(&r.id);
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // The header's version is the one the scripts compare (bytes: the
    // payload is binary).
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let rest = stored
        .strip_prefix(b"sk1:1:")
        .expect("header of a new session");
    let huge: u64 = (1 << 63) + 5;
    let mut edited = format!("sk1:{huge}:").into_bytes();
    edited.extend_from_slice(rest);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&edited)
        .arg("KEEPTTL")
        .query_async(&mut conn)
        .await
        .unwrap();
    let loaded = store.load(&cookie).await.unwrap().unwrap();
    assert_eq!(loaded.version, huge);
    let mut mine = loaded.clone();
    mine.data.f0 = 7;
    let out = update(&store, &mine, &loaded.data).await;
    assert!(matches!(out, Ok(SaveOutcome::Kept)), "{out:?}");
    let again = store.load(&cookie).await.unwrap().unwrap();
    assert_eq!((again.version, again.data.f0), (huge + 1, 7));
}

/// A replica cut off from its master answers `MASTERDOWN`, as a restarted
/// server loading its data answers `LOADING`: Redis will serve again
/// shortly, so the error is transient (retried, counted by the breaker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_serve_yet_is_unavailable_not_a_backend_error() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let store = store_on(&server).await;
    let r = new_record(None);
    let cookie = create(&store, &r).await;
    server
        .command("CONFIG SET replica-serve-stale-data no")
        .unwrap();
    // Port 1: nothing listens, so the replica never syncs (and keeps its data).
    server.command("REPLICAOF 127.0.0.1 1").unwrap();
    let err = store.load(&cookie).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable(_)) && err.is_transient(),
        "{err:?}"
    );
    assert!(
        err.to_string().to_lowercase().contains("masterdown"),
        "{err}"
    );
    server.command("REPLICAOF NO ONE").unwrap();
    let back = store
        .load(&cookie)
        .await
        .unwrap()
        .expect("the session is still there");
    assert_eq!(back.id, r.id);
}

/// A create or a regenerate sent again after its reply was lost (what the
/// Redis Cluster client does when a connection drops mid-command) finds its
/// own write: the key taken by this very session, the old key already
/// moved. It answers saved, not a collision or "gone" (which would log the
/// user out at login). Another session under the id is still a collision,
/// and a regenerate of a session deleted meanwhile is still gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_create_or_regenerate_finds_its_own_write() {
    let store = store_on(shared()).await;
    let r = new_record(Some("resend-user"));
    let cookie = create(&store, &r).await;
    assert_eq!(create(&store, &r).await, cookie, "the same create again");
    let mut other = r.clone();
    other.data.f3 = 3;
    assert!(matches!(
        try_create(&store, &other).await,
        Err(StoreError::Conflict(_))
    ));

    let loaded = store.load(&cookie).await.unwrap().unwrap();
    let mut moved = loaded.clone();
    moved.id = SessionId::generate();
    let regenerate = || store.save(Save::regenerate(&moved, loaded.id, Some(&loaded.data)));
    let first = regenerate().await.unwrap();
    assert_eq!(first, SaveOutcome::Saved(moved.id.encode()));
    assert_eq!(
        regenerate().await.unwrap(),
        first,
        "the same regenerate again"
    );
    assert!(
        store.load(&cookie).await.unwrap().is_none(),
        "the old id is dead"
    );
    assert_eq!(
        store.by_owner("resend-user").await.unwrap().len(),
        1,
        "one session, indexed once"
    );

    // Deleted meanwhile, then regenerated to a new id: gone, nothing created.
    assert!(store.delete(&moved.id).await.unwrap());
    let mut again = moved.clone();
    again.id = SessionId::generate();
    let gone = store
        .save(Save::regenerate(&again, moved.id, Some(&moved.data)))
        .await
        .unwrap();
    assert_eq!(gone, SaveOutcome::Gone);
    assert!(store.load(&again.id.encode()).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_moved_to_another_key_does_not_load_under_that_id() {
    let server = shared();
    let store = store_on(server).await;
    let victim = new_record(None);
    let attacker = new_record(None);
    create(&store, &victim).await;
    let attacker_cookie = create(&store, &attacker).await;
    // Someone with write access copies the victim's value under the attacker's key.
    server
        .command(&format!(
            "COPY {} {} REPLACE",
            store.key_of(&victim.id),
            store.key_of(&attacker.id)
        ))
        .unwrap();
    assert!(matches!(
        store.load(&attacker_cookie).await,
        Err(StoreError::Decode(_))
    ));
    // Listed once, under its own key: the copy is not that session (a purge
    // of it would delete the victim's key and miss the copy).
    let listed = store.find_by(&|_| true).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [victim.id.handle()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_with_glob_characters_scans_only_its_own_keys() {
    let server = shared();
    let tag = &SessionId::generate().storage_key()[..8];
    let globby: RedisStore<Wide> = RedisStore::builder(server.url())
        .key_prefix(format!("g{tag}*:"))
        .connect()
        .await
        .unwrap();
    let plain: RedisStore<Wide> = RedisStore::builder(server.url())
        .key_prefix(format!("g{tag}x:"))
        .connect()
        .await
        .unwrap();
    create(&globby, &new_record(None)).await;
    create(&plain, &new_record(None)).await;
    create(&plain, &new_record(None)).await;
    assert_eq!(globby.count().await.unwrap(), 1);
    assert_eq!(plain.count().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iteration_walks_many_batches_and_owner_sets_are_not_sessions() {
    let store: RedisStore<Wide> = RedisStore::builder(shared().url())
        .key_prefix(unique_prefix())
        .scan_batch(7)
        .connect()
        .await
        .unwrap();
    for i in 0..60 {
        let owner = format!("iter-owner-{}", i % 5);
        create(&store, &new_record(Some(&owner))).await;
    }
    assert_eq!(store.count().await.unwrap(), 60);
    assert_eq!(store.find_by(&|_| true).await.unwrap().len(), 60);
    let removed = store
        .bulk_delete(&|r| r.owner.as_deref() == Some("iter-owner-0"))
        .await
        .unwrap();
    assert_eq!(removed.len(), 12);
    assert_eq!(store.count().await.unwrap(), 48);
    assert_eq!(store.delete_owner("iter-owner-1").await.unwrap().len(), 12);
    assert_eq!(store.count().await.unwrap(), 36);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_connects_over_a_unix_socket() {
    let server = shared();
    let store: RedisStore<Wide> = RedisStore::builder(server.unix_url())
        .key_prefix(unique_prefix())
        .connect()
        .await
        .unwrap();
    let r = new_record(None);
    let cookie = create(&store, &r).await;
    assert!(store.load(&cookie).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_is_an_error_that_does_not_quote_it() {
    let err = RedisStore::<Wide>::connect("redis://user:hunter2@[not-a-host")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_recovers_after_redis_restarts_and_loses_its_scripts() {
    let mut server = RedisServer::start().unwrap();
    let store = store_on(&server).await;
    create(&store, &new_record(None)).await;
    server.restart().unwrap();
    // The connection and the script cache are gone; the store reconnects
    // and reloads the script on NOSCRIPT.
    let r = new_record(Some("after-restart"));
    let mut saved = None;
    for _ in 0..50 {
        match store.save(Save::create(&r)).await {
            Ok(out) => {
                saved = Some(out);
                break;
            }
            Err(e) => {
                assert!(e.is_transient(), "{e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(matches!(saved, Some(SaveOutcome::Saved(_))));
    assert!(store.load(&r.id.encode()).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_is_a_timeout_and_service_resumes_after() {
    let server = RedisServer::start().unwrap();
    let store: RedisStore<Wide> = RedisStore::builder(server.url())
        .response_timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let r = new_record(None);
    let cookie = create(&store, &r).await;
    server.pause().unwrap();
    let err = store.load(&cookie).await.unwrap_err();
    assert!(matches!(err, StoreError::Timeout(_)), "{err:?}");
    assert!(err.is_transient());
    server.resume().unwrap();
    let mut loaded = None;
    for _ in 0..50 {
        if let Ok(found) = store.load(&cookie).await {
            loaded = found;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(loaded.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttls_follow_the_injected_clock_not_the_wall_clock() {
    let server = shared();
    let clock = sessionkit::ManualClock::new();
    clock.advance(Duration::from_secs(10 * 24 * 3600));
    let config = Config::builder().clock(clock.clone()).build().unwrap();
    let store: RedisStore<Wide> = RedisStore::builder(server.url())
        .key_prefix(unique_prefix())
        .clock(config.clock().clone())
        .connect()
        .await
        .unwrap();
    let r = Record::new(
        SessionId::generate(),
        Wide::default(),
        sessionkit::Clock::now(&clock),
        config.expiry(),
    );
    let cookie = create(&store, &r).await;
    let reply = server
        .command(&format!("PTTL {}", store.key_of(&r.id)))
        .unwrap();
    let pttl: i64 = reply.trim().trim_start_matches(':').parse().unwrap();
    let want = r
        .time_until_expiry(sessionkit::Clock::now(&clock))
        .as_millis() as i64;
    assert!(pttl > want - 5_000 && pttl <= want, "{pttl} vs {want}");
    assert!(store.load(&cookie).await.unwrap().is_some());
    assert_eq!(store.find_by(&|_| true).await.unwrap().len(), 1);
}

/// With `connect_retries(0)` a Redis that is down fails `connect` at once
/// (a refused connection, no backoff), with an error that does not quote
/// the URL; with one retry it still fails, after one backoff step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_retries_bounds_the_wait_for_a_redis_that_is_down() {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://:secret-password@127.0.0.1:{port}/");
    for retries in [0, 1] {
        let started = std::time::Instant::now();
        let err = RedisStore::<Wide>::builder(url.clone())
            .connect_retries(retries)
            .connect()
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "{retries} retries took {took:?}"
        );
        assert!(!err.to_string().contains("secret-password"), "{err}");
    }
}

/// `lazy()`: the store is built while Redis is down (no wait, no error);
/// its operations fail with a transient error meanwhile, and once Redis is
/// up they work, scripts included (loaded on first use).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_store_starts_while_redis_is_down_and_works_once_it_is_up() {
    let mut server = RedisServer::start().expect("redis-server");
    server.kill().unwrap();
    let started = std::time::Instant::now();
    let store = RedisStore::<Wide>::builder(server.url())
        .connect_retries(0)
        .lazy()
        .connect()
        .await
        .expect("a lazy connect does not reach Redis");
    assert!(started.elapsed() < Duration::from_secs(1));
    let r = new_record(Some("ada"));
    let err = store.load(&r.id.encode()).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    server.restart().unwrap();
    // The first command after Redis came back may still see the failed
    // connection; the manager reconnects behind it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let cookie = loop {
        let save = store.save(Save::create(&r)).await;
        match save {
            Ok(SaveOutcome::Saved(cookie)) => break cookie,
            Err(e) if e.is_transient() && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("save after Redis came back: {other:?}"),
        }
    };
    let loaded = store.load(&cookie).await.unwrap().expect("saved session");
    assert_eq!((loaded.id, loaded.owner.as_deref()), (r.id, Some("ada")));
}

/// `build_lazy()`: built without awaiting, inside a runtime; the first
/// command connects and loads the scripts, and the store works as one from
/// `connect()` (create, load, update).
#[tokio::test]
async fn a_store_built_without_awaiting_connects_on_first_use() {
    let store = RedisStore::<Wide>::builder(shared().url())
        .key_prefix(unique_prefix())
        .build_lazy()
        .expect("build_lazy inside a runtime");
    let r = new_record(Some("ada"));
    let cookie = create(&store, &r).await;
    let loaded = store.load(&cookie).await.unwrap().expect("saved session");
    assert_eq!((loaded.id, loaded.owner.as_deref()), (r.id, Some("ada")));
    let mut next = loaded.clone();
    next.data.set(0, 7);
    let outcome = update(&store, &next, &loaded.data).await.unwrap();
    assert_eq!(outcome, SaveOutcome::Kept);
    let again = store.load(&cookie).await.unwrap().expect("updated session");
    assert_eq!(again.data.f0, 7);
}

/// Outside a Tokio runtime `build_lazy` is a clear error, not a panic; so
/// is a URL redis-rs cannot parse (and the error does not quote it).
#[test]
fn build_lazy_fails_cleanly_outside_a_runtime_and_on_a_bad_url() {
    let err = RedisStore::<Wide>::builder("redis://127.0.0.1:1/")
        .build_lazy()
        .unwrap_err();
    assert!(err.to_string().contains("Tokio runtime"), "{err}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let err = RedisStore::<Wide>::builder("nonsense://secret-password@x")
            .build_lazy()
            .unwrap_err();
        assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
        assert!(!err.to_string().contains("secret-password"), "{err}");
    });
}

/// A current-thread runtime of its own, with I/O and timers (as one
/// actix-web worker has).
fn worker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Creates a session through `store` and loads it back, retrying transient
/// errors for up to 5 s (a Redis that has just restarted).
async fn create_and_load_retrying(store: &RedisStore<Wide>) {
    let r = new_record(None);
    for _ in 0..100 {
        match try_create(store, &r).await {
            Ok(SaveOutcome::Saved(cookie)) => {
                let loaded = store.load(&cookie).await.unwrap().expect("just saved");
                assert_eq!(loaded.id, r.id);
                return;
            }
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                assert!(e.is_transient(), "{e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    panic!("no save within 5 s");
}

/// One store, connected on the test's runtime and cloned into two threads
/// that each run a runtime of their own (as actix-web's workers do): each
/// runtime gets a connection of its own, and every one of them comes back
/// after Redis restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_used_from_several_runtimes_gives_each_a_connection_that_survives_a_restart() {
    let mut server = RedisServer::start().unwrap();
    let store = store_on(&server).await;
    create_and_load_retrying(&store).await;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                let rt = worker_runtime();
                rt.block_on(create_and_load_retrying(&store));
                barrier.wait(); // served once
                barrier.wait(); // Redis restarted
                rt.block_on(create_and_load_retrying(&store));
                barrier.wait(); // served again
                barrier.wait(); // counted
            })
        })
        .collect();
    tokio::task::block_in_place(|| barrier.wait());
    assert_eq!(store.connections(), 3, "the test's runtime and two more");
    server.restart().unwrap();
    tokio::task::block_in_place(|| barrier.wait());
    create_and_load_retrying(&store).await;
    tokio::task::block_in_place(|| barrier.wait());
    assert_eq!(store.connections(), 3, "the same three, reconnected");
    tokio::task::block_in_place(|| barrier.wait());
    for t in threads {
        t.join().expect("a worker thread");
    }
    assert_eq!(
        store.connections(),
        1,
        "the workers' runtimes have shut down, their connections with them"
    );
}

/// A store connected on a runtime that has since shut down (a set-up
/// runtime, say) still serves every runtime that uses it afterwards: each
/// gets a connection of its own instead of the one that died with the
/// first runtime.
#[test]
fn a_store_outlives_the_runtime_that_connected_it() {
    let server = shared();
    let store = connected_on_a_runtime_now_gone(server);
    // That runtime is gone; its connection's task with it.
    assert_eq!(store.connections(), 0);
    worker_runtime().block_on(async {
        create_and_load_retrying(&store).await;
        assert_eq!(store.connections(), 1, "this runtime's own");
    });
    assert_eq!(store.connections(), 0);
}

/// A store used from one short-lived runtime after another (a runtime per
/// job or per test, say), more of them than it keeps connections for, and
/// the runtime that connected it gone: every one of them is served at the
/// first attempt. A runtime that has shut down gives its connection back,
/// so the store never holds more than the live runtimes need and never
/// falls back to a connection whose runtime is gone.
#[test]
fn a_store_used_from_many_short_lived_runtimes_serves_each_at_once() {
    let server = shared();
    let store = connected_on_a_runtime_now_gone(server);
    for run in 0..100 {
        worker_runtime().block_on(async {
            let r = new_record(None);
            let saved = try_create(&store, &r).await;
            let Ok(SaveOutcome::Saved(cookie)) = saved else {
                panic!("runtime {run}: {saved:?}");
            };
            let loaded = store.load(&cookie).await;
            assert!(matches!(loaded, Ok(Some(_))), "runtime {run}: {loaded:?}");
            assert_eq!(store.connections(), 1, "runtime {run}: its own");
        });
        assert_eq!(
            store.connections(),
            0,
            "runtime {run} gone, its connection too"
        );
    }
}

/// A store connected on a runtime that has shut down since.
fn connected_on_a_runtime_now_gone(server: &RedisServer) -> RedisStore<Wide> {
    worker_runtime().block_on(async {
        RedisStore::<Wide>::builder(server.url())
            .key_prefix(unique_prefix())
            .connect()
            .await
            .unwrap()
    })
}

/// An update that keeps meeting newer versions past the merge retries is a
/// `Conflict`: about one session, so a breaker in front of the store stays
/// closed however many come in a row (a client racing itself must not take
/// the store away from everyone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_retries_run_out_as_a_conflict_that_never_opens_the_breaker() {
    use sessionkit::resilience::{BreakerState, ResilienceConfig, Resilient};
    let inner: RedisStore<Wide> = RedisStore::builder(shared().url())
        .key_prefix(unique_prefix())
        .max_merge_retries(0)
        .connect()
        .await
        .expect("connect");
    let store = Resilient::new(
        inner,
        ResilienceConfig::builder()
            .failure_threshold(2)
            .build()
            .unwrap(),
    );
    let r = new_record(None);
    let cookie = match store.save(Save::create(&r)).await {
        Ok(SaveOutcome::Saved(c)) => c,
        other => panic!("create failed: {other:?}"),
    };
    let stale = store.load(&cookie).await.unwrap().unwrap();
    let mut first = stale.clone();
    first.data.f1 = 1;
    store
        .save(Save::update(&first, Some(&stale.data)))
        .await
        .unwrap();
    for v in 2..6 {
        let mut late = stale.clone();
        late.data.f2 = v;
        let err = store
            .save(Save::update(&late, Some(&stale.data)))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert!(err.to_string().contains("kept changing"), "{err}");
    }
    assert_eq!(store.breaker().state(), BreakerState::Closed);
    assert_eq!(store.load(&cookie).await.unwrap().unwrap().data.f1, 1);
}

/// A wrong password is a setting to fix, not an outage: the error is not
/// transient (so `Resilient` does not retry it) and does not quote the
/// password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_backend_error_not_an_outage() {
    let server = RedisServer::start().unwrap();
    server.command("CONFIG SET requirepass right-one").unwrap();
    let url = format!("redis://:wrong-one@127.0.0.1:{}/", server.port());
    let err = match RedisStore::<Wide>::builder(url).connect().await {
        Err(e) => e,
        Ok(store) => store
            .load(&SessionId::generate().encode())
            .await
            .unwrap_err(),
    };
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert!(!err.is_transient(), "{err:?}");
    assert!(!err.to_string().contains("wrong-one"), "{err}");
    let url = format!("redis://:right-one@127.0.0.1:{}/", server.port());
    let store = RedisStore::<Wide>::builder(url).connect().await.unwrap();
    assert!(store
        .load(&SessionId::generate().encode())
        .await
        .unwrap()
        .is_none());
}

/// A session of `owner`'s, created and then moved to a new id by a
/// regenerate: the record as created, and as moved.
async fn moved_session(store: &RedisStore<Wide>, owner: &str) -> (Record<Wide>, Record<Wide>) {
    let r = new_record(Some(owner));
    create(store, &r).await;
    let loaded = store.load(&r.id.encode()).await.unwrap().unwrap();
    let mut moved = loaded.clone();
    moved.id = SessionId::generate();
    let out = store.save(Save::regenerate(&moved, r.id, None)).await;
    assert!(out.unwrap().is_saved());
    (r, moved)
}

/// A logout that follows a regenerate (`delete_following`) removes the new
/// id's owner index member too, and the move it followed stays a minute at
/// most; a move marker holding anything but a key hash, or a key of another
/// type, is not followed (and is no error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_logout_leaves_no_index_member_and_follows_only_key_hashes() {
    let server = shared();
    let store = store_on(server).await;
    let (r, moved) = moved_session(&store, "follow-owner").await;
    let marker = format!("{}moved:{}", store.key_prefix(), r.id.storage_key());
    let ttl = server.command(&format!("PTTL {marker}")).unwrap();
    let ttl: i64 = ttl.trim().trim_start_matches(':').parse().unwrap();
    assert!((1..=60_000).contains(&ttl), "{ttl}");
    assert!(store.delete_following(&r.id).await.unwrap().deleted());
    assert!(store.load(&moved.id.encode()).await.unwrap().is_none());
    let card = server
        .command(&format!("SCARD {}", store.owner_key_of("follow-owner")))
        .unwrap();
    assert_eq!(
        card.trim(),
        ":0",
        "the new id's member is left in the index"
    );
    // Markers of other making: not followed.
    let victim = new_record(None);
    create(&store, &victim).await;
    let (a, b) = (SessionId::generate(), SessionId::generate());
    let marker_a = format!("{}moved:{}", store.key_prefix(), a.storage_key());
    let marker_b = format!("{}moved:{}", store.key_prefix(), b.storage_key());
    server
        .command(&format!("SET {marker_a} ../{}", victim.id.storage_key()))
        .unwrap();
    server
        .command(&format!("HSET {marker_b} f {}", victim.id.storage_key()))
        .unwrap();
    assert!(!store.delete_following(&a).await.unwrap().deleted());
    assert!(!store.delete_following(&b).await.unwrap().deleted());
    assert!(store.load(&victim.id.encode()).await.unwrap().is_some());
    // A moved session this process cannot decode is deleted all the same,
    // answered `Deleted` (the logout's event keeps the owner it loaded).
    let (r, moved) = moved_session(&store, "follow-owner").await;
    server
        .command(&format!(
            "SET {} sk1:2::garbage PX 60000",
            store.key_of(&moved.id)
        ))
        .unwrap();
    assert_eq!(
        store.delete_following(&r.id).await.unwrap(),
        sessionkit::store::Followed::Deleted
    );
    assert!(server
        .command(&format!("EXISTS {}", store.key_of(&moved.id)))
        .unwrap()
        .contains(":0"));
}

/// A Redis that may evict sessions (`maxmemory-policy` other than
/// `noeviction`) is named; one that does not, or will not say (`CONFIG`
/// renamed away), is not, and the store connects either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_may_evict_sessions_is_reported() {
    let evicting = RedisServer::start_with_args(["--maxmemory-policy", "allkeys-lru"]).unwrap();
    let store = store_on(&evicting).await;
    assert_eq!(
        store.eviction_policy().await.unwrap().as_deref(),
        Some("allkeys-lru")
    );
    let store = store_on(shared()).await;
    assert_eq!(store.eviction_policy().await.unwrap(), None);
    let silent = RedisServer::start_with_args(["--rename-command", "CONFIG", ""]).unwrap();
    let store = store_on(&silent).await;
    assert_eq!(store.eviction_policy().await.unwrap(), None);
}

/// A Redis busy with a long script (someone else's, past
/// `busy-reply-threshold`) refuses every command with `BUSY`: a store that
/// will answer again shortly, so `Unavailable` (retried, counted by the
/// breaker), not a `Backend` error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_busy_with_a_long_script_is_unavailable() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let store = RedisStore::<Wide>::builder(server.url())
        .response_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("busy-reply-threshold")
        .arg("50")
        .query_async(&mut admin)
        .await
        .unwrap();
    let mut blocker = client.get_multiplexed_async_connection().await.unwrap();
    let busy = tokio::spawn(async move {
        redis::cmd("EVAL")
            .arg("while true do end")
            .arg(0)
            .query_async::<()>(&mut blocker)
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = store.load(&SessionId::generate().encode()).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    let _: () = redis::cmd("SCRIPT")
        .arg("KILL")
        .query_async(&mut admin)
        .await
        .unwrap();
    let _ = busy.await;
    assert!(store
        .load(&SessionId::generate().encode())
        .await
        .unwrap()
        .is_none());
}

/// An owner's index key holding something other than a set (another tool
/// wrote under the prefix) lists nothing and is replaced by the owner's
/// next save: before, every save with that owner wrote its session and then
/// failed on `WRONGTYPE` (a save that landed answered an error), and the
/// owner could be neither listed nor revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_index_key_of_another_type_is_replaced_not_an_error() {
    let server = shared();
    let store = store_on(server).await;
    let set = store.owner_key_of("ann");
    server.command(&format!("SET {set} garbage")).unwrap();
    assert!(store.by_owner("ann").await.unwrap().is_empty());
    assert!(store.delete_owner("ann").await.unwrap().is_empty());
    let r = new_record(Some("ann"));
    let cookie = create(&store, &r).await;
    assert_eq!(store.by_owner("ann").await.unwrap().len(), 1);

    server.command(&format!("SET {set} garbage")).unwrap();
    let loaded = store.load(&cookie).await.unwrap().unwrap();
    let mut changed = loaded.clone();
    changed.data.f0 += 1;
    let out = store.save(Save::update(&changed, Some(&loaded.data))).await;
    assert!(matches!(out, Ok(SaveOutcome::Kept)), "{out:?}");
    assert_eq!(
        store.by_owner("ann").await.unwrap().len(),
        1,
        "indexed again"
    );

    server.command(&format!("SET {set} garbage")).unwrap();
    let loaded = store.load(&cookie).await.unwrap().unwrap();
    let mut moved = loaded.clone();
    moved.id = SessionId::generate();
    let out = store.save(Save::regenerate(&moved, loaded.id, None)).await;
    assert!(matches!(out, Ok(SaveOutcome::Saved(_))), "{out:?}");
    let removed = store.delete_owner("ann").await.unwrap();
    assert_eq!(removed.len(), 1);
    assert!(store.load(&moved.id.encode()).await.unwrap().is_none());
}
