//! The attack suite (see `tests/attack_support`) against [`CookieStore`],
//! over real HTTP, plus a gzip bomb sealed with the right key.
//!
//! Not run here, because a stateless store cannot pass them (see
//! SECURITY.md, "It cannot revoke"): replay after logout, after owner revoke
//! and after re-login, and the slow save after logout. A copied sealed
//! cookie stays valid until its idle or absolute deadline.

mod attack_support;

use std::time::{Duration, Instant};

use attack_support::{attacks, counting, rss_bytes, App, Data, Kit, HOSTILE_RSS_BOUND};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sessionkit::codec::{Codec, Compression};
use sessionkit::keys::{KeyPurpose, KeyRing};
use sessionkit::store::cookie::CookieStore;
use sessionkit::{Record, SessionId};

const SECRET: &str = "attack-suite secret of at least thirty-two bytes";

fn ring() -> KeyRing {
    KeyRing::builder().current(1, SECRET).build().unwrap()
}

async fn app() -> App {
    let kit = Kit::new();
    let store = CookieStore::<Data>::new(&ring(), &kit.config);
    kit.serve(store).await
}

async fn bound_app() -> App {
    let kit = Kit::bound_to_user_agent();
    let store = CookieStore::<Data>::new(&ring(), &kit.config);
    kit.serve(store).await
}

attack_suite!(bound_app; binding_a_cookie_replayed_from_another_browser_gives_a_fresh_session);

attack_suite!(app;
    fixation_a_planted_session_does_not_become_the_victims_login,
    replay_after_idle_expiry_gives_a_fresh_session,
    replay_after_absolute_expiry_gives_a_fresh_session,
    tampering_any_changed_character_gives_a_fresh_session,
    key_injection_gives_a_fresh_session,
    ambiguous_or_lookalike_cookies_give_no_session,
    hostile_headers_stay_within_time_and_memory_bounds,
    race_parallel_logins_give_independent_fixation_safe_sessions,
);

/// The same attacks with the opened-value cache on: a cache hit must
/// never let through what opening would refuse.
mod with_opened_cache {
    use super::*;

    async fn cached_app() -> App {
        let kit = Kit::new();
        let store = CookieStore::<Data>::builder(&ring(), &kit.config)
            .opened_cache(1024)
            .build();
        kit.serve(store).await
    }

    attack_suite!(cached_app;
        fixation_a_planted_session_does_not_become_the_victims_login,
        replay_after_idle_expiry_gives_a_fresh_session,
        replay_after_absolute_expiry_gives_a_fresh_session,
        tampering_any_changed_character_gives_a_fresh_session,
        key_injection_gives_a_fresh_session,
        ambiguous_or_lookalike_cookies_give_no_session,
        race_parallel_logins_give_independent_fixation_safe_sessions,
    );
}

/// 10^5 random values over HTTP: none opens, every one is counted.
#[test]
fn enumeration_of_a_hundred_thousand_random_values_finds_nothing_and_is_counted() {
    const N: usize = 100_000;
    let invalid = counting("sessionkit_invalid_lookups_total", || async {
        attacks::enumeration_finds_nothing(&app().await, N).await;
    });
    println!("invalid lookups counted: {invalid}");
    assert!(invalid >= N as u64, "only {invalid} of {N} counted");
}

/// A gzip bomb inside a validly sealed cookie: the right key, the right
/// cookie name, a logged-in record whose JSON is 2.5 MB of zeros compressed
/// to under the 4096-byte cookie limit (deflate cannot do better than about
/// 1000:1, so a cookie cannot carry a bigger bomb; a 1 GiB one needs at least
/// 1 MB of deflate data and is refused on length before any decoding).
/// Opening stops at the store's `max_decoded_len` (64 KiB): a fresh session
/// within 1 s and less than 64 MiB of memory growth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_in_a_validly_sealed_cookie_is_refused_within_bounds() {
    let app = app().await;
    let ring = ring();
    // The store's own sealing, without its decompression bound, at the
    // best compression an attacker would use.
    let codec = Codec::builder()
        .compression(Compression::Gzip { threshold: 256 })
        .gzip_level(9)
        .seal(&ring, KeyPurpose::CookieSealing)
        .context("__Host-id")
        .max_encoded_len(usize::MAX)
        .max_decoded_len(usize::MAX)
        .build();
    let now = std::time::SystemTime::now();
    let policy = *Kit::new().config.expiry();
    let mut record = Record::new(SessionId::generate(), Data::default(), now, &policy);
    record.data.user = Some("alice".into());
    record.data.extra = Some(serde_json::Value::String("0".repeat(2_500_000)));
    let bomb = URL_SAFE_NO_PAD.encode(codec.encode(&record).unwrap());
    assert!(bomb.len() <= 4096, "bomb is {} bytes", bomb.len());
    // Control: without the bomb, the same sealing opens as alice.
    record.data.extra = None;
    let honest = URL_SAFE_NO_PAD.encode(codec.encode(&record).unwrap());
    assert_eq!(app.me(&honest).await, "alice:0");

    let rss_before = rss_bytes();
    let started = Instant::now();
    let r = app.call("GET", "/me", Some(&bomb)).await;
    let took = started.elapsed();
    let grown = rss_bytes().saturating_sub(rss_before);
    println!(
        "sealed gzip bomb ({} bytes, inflates to 2.5 MB): refused in {took:?}, RSS growth {} KiB",
        bomb.len(),
        grown / 1024
    );
    assert_eq!((r.status, r.body.as_str()), (200, "anon:0"));
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(grown < HOSTILE_RSS_BOUND);
}

/// Binding keys come from the ring; after a rotation (new current secret,
/// old one kept as previous) a session bound before it still serves its own
/// browser and still refuses a thief's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_survives_key_rotation_and_still_refuses_a_thief() {
    use sessionkit::binding::ClientInfo;
    use sessionkit::store::memory::MemoryStore;
    use sessionkit::{BindingKey, Config, Sessions};

    let old = ring();
    let rotated = KeyRing::builder()
        .current(2, "the next secret, also thirty-two bytes or more")
        .previous(1, SECRET)
        .build()
        .unwrap();
    let config = |ring: &KeyRing| {
        Config::builder()
            .bind_to_user_agent(true)
            .binding_key(BindingKey::from_key_ring(ring))
            .build()
            .unwrap()
    };
    let browser = |ua: &str| ClientInfo {
        ip: None,
        user_agent: Some(ua.as_bytes().to_vec()),
    };
    let store = MemoryStore::<Data>::new();
    let before = Sessions::new(store.clone(), config(&old));
    let s = before.load_for(None, &browser("Firefox")).await.unwrap();
    s.data_mut().user = Some("alice".into());
    let cookie = before
        .commit(&s, None)
        .await
        .unwrap()
        .value()
        .unwrap()
        .to_owned();

    let after = Sessions::new(store, config(&rotated));
    let own = after
        .load_for(Some(&cookie), &browser("Firefox"))
        .await
        .unwrap();
    assert_eq!(
        own.data().user.as_deref(),
        Some("alice"),
        "rotation unbound the session"
    );
    let thief = after
        .load_for(Some(&cookie), &browser("curl/8"))
        .await
        .unwrap();
    assert!(thief.is_new() && thief.data().user.is_none());
}
