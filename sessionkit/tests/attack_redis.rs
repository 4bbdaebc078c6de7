//! The attack suite (see `tests/attack_support`) against [`RedisStore`] on a
//! throw-away `redis-server`, over real HTTP; plus what only Redis needs:
//! injected cookie values send no command at all (`INFO commandstats`), a
//! stored record with 100 000 nested arrays in a field is a clean fresh session, and
//! enumeration as 10^5 direct loads plus 10^4 over HTTP.
//!
//! Expiry attacks run with a manual clock 30 minutes or more ahead of the
//! real one while Redis's own TTL still runs in real time: the keys still
//! exist, and only the deadlines in the record (checked by the core) stop
//! the replay.

mod attack_support;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use attack_support::{attacks, counting, random_id, within, App, Data, Kit};
use sessionkit::store::redis::RedisStore;
use sessionkit::testing::redis_server::RedisServer;
use sessionkit::{Config, SessionId, Sessions};

/// One server for the tests that do not inspect it; each app gets its own prefix.
fn shared() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::start().expect("redis-server"))
}

async fn store(url: &str, kit: &Kit) -> RedisStore<Data> {
    RedisStore::<Data>::builder(url)
        .key_prefix(format!("attack:{}:", &random_id()[..8]))
        .clock(Arc::new(kit.clock.clone()))
        .connect()
        .await
        .expect("connect")
}

async fn app() -> App {
    app_on(shared()).await
}

async fn app_on(server: &RedisServer) -> App {
    let kit = Kit::new();
    let store = store(&server.url(), &kit).await;
    kit.serve_query(store).await
}

async fn bound_app() -> App {
    let kit = Kit::bound_to_user_agent();
    let store = store(&shared().url(), &kit).await;
    kit.serve_query(store).await
}

attack_suite!(bound_app; binding_a_cookie_replayed_from_another_browser_gives_a_fresh_session);

server_side_attack_suite!(app);

/// Calls of every command but the probe's own `INFO` and `QUIT`, from `INFO commandstats`.
fn commands_sent(server: &RedisServer) -> u64 {
    let stats = server.command("INFO commandstats").unwrap();
    stats
        .lines()
        .filter(|l| {
            l.starts_with("cmdstat_")
                && !l.starts_with("cmdstat_info:")
                && !l.starts_with("cmdstat_quit:")
        })
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_cookie_values_send_no_command_to_redis() {
    let server = RedisServer::start().expect("redis-server");
    let app = app_on(&server).await;
    let valid = app.login("alice", None).await;
    let before = commands_sent(&server);
    attacks::key_injection_gives_a_fresh_session(&app).await;
    let after = commands_sent(&server);
    assert_eq!(after - before, 0, "hostile cookie values reached Redis");
    // Control: a well-formed id does reach Redis (the counter can move).
    assert_eq!(app.me(&valid).await, "alice:0");
    assert!(commands_sent(&server) > after);
}

/// A stored record whose free-form JSON field holds 100 000 nested arrays
/// (or objects), written under a real session's key: the request gets a
/// fresh session within 5 s, with no stack overflow (which would abort this
/// whole test binary) and no 5xx. Defence: serde_json's recursion limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_stored_value_gives_a_fresh_session() {
    let server = RedisServer::start().expect("redis-server");
    let kit = Kit::new();
    let store = store(&server.url(), &kit).await;
    let key_of = {
        let s = store.clone();
        move |cookie: &str| s.key_of(&SessionId::parse(cookie).unwrap())
    };
    let app = kit.serve_query(store).await;
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    const DEPTH: usize = 100_000;
    let arrays = format!("{}{}", "[".repeat(DEPTH), "]".repeat(DEPTH));
    let objects = format!("{}1{}", "{\"a\":".repeat(DEPTH), "}".repeat(DEPTH));
    for bomb in [arrays, objects] {
        let cookie = app.login("alice", None).await;
        let key = key_of(&cookie);
        // Bytes: the record's metadata is binary, its data JSON.
        let stored: Vec<u8> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let field = b"\"extra\":null";
        let at = stored
            .windows(field.len())
            .position(|w| w == field)
            .expect("record layout changed");
        let mut hostile = stored[..at].to_vec();
        hostile.extend_from_slice(format!("\"extra\":{bomb}").as_bytes());
        hostile.extend_from_slice(&stored[at + field.len()..]);
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(&hostile)
            .arg("KEEPTTL")
            .query_async(&mut conn)
            .await
            .unwrap();
        let r = within(
            "load of a record with a 100 000-deep field",
            Duration::from_secs(5),
            app.call("GET", "/me", Some(&cookie)),
        )
        .await;
        assert_eq!((r.status, r.body.as_str()), (200, "anon:0"));
    }
}

/// 10^5 random ids loaded directly through `Sessions` (the HTTP edge adds
/// nothing to a lookup) plus 10^4 over HTTP: no hit, all counted.
#[test]
fn enumeration_of_random_ids_finds_nothing_and_is_counted() {
    const DIRECT: usize = 100_000;
    const HTTP: usize = 10_000;
    let invalid = counting("sessionkit_invalid_lookups_total", || async {
        let kit = Kit::new();
        let store = store(&shared().url(), &kit).await;
        let sessions = Sessions::new(store, Config::default());
        for _ in 0..DIRECT {
            let s = sessions.load(Some(&random_id())).await.unwrap();
            assert!(s.is_new(), "a random id found a session");
        }
        attacks::enumeration_finds_nothing(&app().await, HTTP).await;
    });
    println!("invalid lookups counted: {invalid}");
    assert!(invalid >= (DIRECT + HTTP) as u64, "only {invalid} counted");
}

/// The same attacks with stored values sealed (`RedisStoreBuilder::codec`
/// with the key ring's store-data subkey; feature `crypto`).
#[cfg(feature = "crypto")]
mod sealed {
    use super::*;
    use sessionkit::codec::Codec;
    use sessionkit::keys::{KeyPurpose, KeyRing};

    async fn sealed_app() -> App {
        let kit = Kit::new();
        let ring = KeyRing::builder()
            .current(1, "attack-suite secret of at least thirty-two bytes")
            .build()
            .unwrap();
        let store = RedisStore::<Data>::builder(shared().url())
            .key_prefix(format!("attack:{}:", &random_id()[..8]))
            .clock(Arc::new(kit.clock.clone()))
            .codec(
                Codec::builder()
                    .seal(&ring, KeyPurpose::StoreData)
                    .context("redis")
                    .build(),
            )
            .connect()
            .await
            .expect("connect");
        kit.serve_query(store).await
    }

    attack_suite!(sealed_app;
        fixation_a_planted_session_does_not_become_the_victims_login,
        fixation_the_previous_id_dies_when_the_same_user_logs_in_again,
        replay_after_logout_gives_a_fresh_session,
        replay_after_owner_revoke_gives_a_fresh_session,
        replay_after_idle_expiry_gives_a_fresh_session,
        replay_after_absolute_expiry_gives_a_fresh_session,
        tampering_any_changed_character_gives_a_fresh_session,
        key_injection_gives_a_fresh_session,
        race_a_slow_save_after_logout_leaves_the_session_deleted,
        race_parallel_logins_give_independent_fixation_safe_sessions,
    );
}
