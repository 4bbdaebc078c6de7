//! `SESSION_STORE=cluster`: three real demo processes on different ports,
//! one test `redis-server` (free port, never 6379), the same
//! `SESSION_SECRET`. The same cookie works on each; a change through one is
//! seen through the others; logout through one kills the session on all.

mod common;

use std::time::{Duration, Instant};

use common::process::Demo;
use common::{assert_anonymous, Browser};
use reqwest::StatusCode;
use serde_json::Value;
use sessionkit::testing::redis_server::RedisServer;

const SECRET: &str = "the fleet's shared secret, 32 bytes or more";

/// How long a test waits for an invalidation to reach another process.
const BOUND: Duration = Duration::from_secs(2);

/// What [`me_until`] saw: the last answer, how long until it came, and on
/// which request (1: the first one after the write already saw it).
struct Seen {
    me: Value,
    took: Duration,
    attempt: u32,
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "after {:?} (request {})", self.took, self.attempt)
    }
}

/// Asks `/api/me` with `cookie` until `done` holds, for at most [`BOUND`].
/// Invalidations travel over pub/sub after the writing request has
/// returned, so another process may need a moment.
async fn me_until(base: &str, cookie: &str, done: impl Fn(&Value) -> bool) -> Seen {
    let began = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let me = Browser::with_cookie(base, cookie).me().await;
        if done(&me) || began.elapsed() > BOUND {
            let took = began.elapsed();
            return Seen { me, took, attempt };
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn three_processes_share_the_session_and_a_logout_on_one_kills_it_on_all() {
    let redis = RedisServer::start().expect("a test redis-server starts");
    let url = redis.url();
    let env = |framework| {
        [
            ("SESSION_STORE", "cluster"),
            ("SESSION_SECRET", SECRET),
            ("REDIS_URL", url.as_str()),
            ("DEMO_FRAMEWORK", framework),
        ]
    };
    // Both frameworks in one fleet: they share the store, not the code path.
    let (_a, a) = Demo::start(&env("axum"));
    let (_b, b) = Demo::start(&env("actix"));
    let (c_demo, c) = Demo::start(&env("axum"));
    assert!(
        c_demo.ready.contains("(store=cluster, framework=axum)"),
        "{}",
        c_demo.ready
    );

    let mut alice = Browser::new(&a);
    assert_eq!(alice.login("alice").await.status, StatusCode::OK);
    assert_eq!(alice.increment().await, 1);
    let cookie = alice.cookie.clone().unwrap();

    // The same cookie works on each process (and fills each one's cache).
    for base in [&a, &b, &c] {
        let me = Browser::with_cookie(base, &cookie).me().await;
        assert_eq!(
            (me["username"].as_str(), me["counter"].as_i64()),
            (Some("alice"), Some(1)),
            "{base}"
        );
    }

    // A change through B reaches the caches of A and C.
    let mut via_b = Browser::with_cookie(&b, &cookie);
    assert_eq!(via_b.increment().await, 2);
    for base in [&a, &c] {
        let seen = me_until(base, &cookie, |me| me["counter"] == 2).await;
        assert_eq!(seen.me["counter"], 2, "{base} kept a stale counter {seen}");
        println!("counter update seen through {base} {seen}");
    }

    // Logout through C: A and B reject the old cookie.
    let mut via_c = Browser::with_cookie(&c, &cookie);
    let logout = via_c.logout().await;
    assert_eq!(logout.body["logged_out"], true, "{}", logout.text);
    for base in [&a, &b, &c] {
        let seen = me_until(base, &cookie, |me| me["logged_in"] == false).await;
        assert_anonymous(&seen.me);
        println!("logout seen through {base} {seen}");
    }
}

#[tokio::test]
async fn admin_revoke_through_one_process_logs_the_user_out_on_every_process() {
    let redis = RedisServer::start().expect("a test redis-server starts");
    let url = redis.url();
    let env = [
        ("SESSION_STORE", "cluster"),
        ("SESSION_SECRET", SECRET),
        ("REDIS_URL", url.as_str()),
    ];
    let (_a, a) = Demo::start(&env);
    let (_b, b) = Demo::start(&env);
    // Carol logs in through A; B caches her session.
    let mut carol = Browser::new(&a);
    carol.login("carol").await;
    let cookie = carol.cookie.clone().unwrap();
    assert_eq!(
        Browser::with_cookie(&b, &cookie).me().await["username"],
        "carol"
    );

    let r = Browser::new(&a)
        .request(reqwest::Method::POST, "/api/admin/revoke/carol", None)
        .await;
    assert_eq!(r.body, serde_json::json!({ "revoked": 1 }), "{}", r.text);
    let seen = me_until(&b, &cookie, |me| me["logged_in"] == false).await;
    assert_anonymous(&seen.me);
    println!("revoke seen through the other process {seen}");
}
