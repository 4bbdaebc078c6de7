//! `SESSION_STORE=redis`: the demo on a real `redis-server` the test starts
//! on a free port (never 6379), over a real TCP socket, once per framework.

mod common;

use std::time::{Duration, Instant};

use common::process::Demo;
use common::{assert_anonymous, Browser, CookieChange};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sessionkit::testing::redis_server::RedisServer;
use sessionkit_demo::config::{DemoConfig, Framework, StoreKind};
use sessionkit_demo::{serve, Running};

fn redis() -> RedisServer {
    RedisServer::start().expect("a test redis-server starts")
}

async fn start(framework: Framework, redis: &RedisServer) -> Running {
    let config = DemoConfig {
        store: StoreKind::Redis,
        redis_url: redis.url(),
        framework,
        port: 0,
        ..DemoConfig::default()
    };
    serve(&config).await.expect("the demo starts on Redis")
}

/// How many session keys the demo holds in Redis (the owner index aside).
fn session_keys(redis: &RedisServer) -> usize {
    let reply = redis
        .command("EVAL \"return #redis.call('KEYS', 'sessionkit-demo:*') - #redis.call('KEYS', 'sessionkit-demo:owner:*')\" 0")
        .expect("redis answers");
    reply
        .trim()
        .trim_start_matches(':')
        .parse()
        .unwrap_or_else(|_| panic!("{reply:?}"))
}

async fn login_counter_logout_then_the_old_cookie_is_dead_in_redis(framework: Framework) {
    let redis = redis();
    let server = start(framework, &redis).await;
    let mut b = Browser::new(&server.url());
    let login = b.login("alice").await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let cookie = b.cookie.clone().expect("login sets the cookie");
    assert_eq!(session_keys(&redis), 1, "the session lives in Redis");

    assert_eq!(b.increment().await, 1);
    assert_eq!(b.increment().await, 2);
    let me = b.me().await;
    assert_eq!(
        (me["username"].as_str(), me["counter"].as_i64()),
        (Some("alice"), Some(2))
    );
    assert_eq!(
        b.flash().await,
        json!([{ "key": "notice", "value": "Welcome, alice" }])
    );

    // A second demo on the same Redis sees the same session: nothing is
    // kept in the process.
    let other = start(framework, &redis).await;
    let me = Browser::with_cookie(&other.url(), &cookie).me().await;
    assert_eq!(me["counter"], 2, "{me}");

    let logout = b.logout().await;
    assert_eq!(logout.body, json!({ "logged_out": true }));
    assert_eq!(logout.cookie, CookieChange::Removed);
    assert_eq!(session_keys(&redis), 0, "logout deleted the key");

    let mut replay = Browser::with_cookie(&server.url(), &cookie);
    let r = replay.request(Method::GET, "/api/me", None).await;
    assert_anonymous(&r.body);
    assert_eq!(
        r.cookie,
        CookieChange::None,
        "a cookie naming no session is left alone (it may be an overlapping request's)"
    );
    assert_anonymous(&Browser::with_cookie(&other.url(), &cookie).me().await);
}

async fn admin_revoke_deletes_every_session_of_the_user_in_redis(framework: Framework) {
    let redis = redis();
    let server = start(framework, &redis).await;
    common::revoke_alice_on_three_clients_but_not_bob(&server.url()).await;
    assert_eq!(session_keys(&redis), 1);
}

async fn a_paused_redis_gets_a_fast_503_and_the_same_cookie_works_once_it_is_back(
    framework: Framework,
) {
    let redis = redis();
    let server = start(framework, &redis).await;
    let mut b = Browser::new(&server.url());
    b.login("alice").await;
    assert_eq!(b.increment().await, 1);
    let cookie = b.cookie.clone().unwrap();

    redis.pause().expect("SIGSTOP");
    let began = Instant::now();
    let r = b.request(Method::POST, "/api/counter", None).await;
    let took = began.elapsed();
    redis.resume().expect("SIGCONT");
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(
        r.body["error"].as_str().unwrap().contains("temporarily"),
        "a JSON error like every API error: {}",
        r.text
    );
    assert_eq!(
        r.cookie,
        CookieChange::None,
        "the cookie is left alone while Redis is down"
    );
    // The resilience layer bounds the whole operation at 1 s.
    assert!(
        took < Duration::from_secs(3),
        "a store outage took {took:?}"
    );

    // Redis is back: the same cookie finds the same session, and the failed
    // increment did not happen.
    let me = Browser::with_cookie(&server.url(), &cookie).me().await;
    assert_eq!(me["username"], "alice", "{me}");
    assert_eq!(me["counter"], 1, "{me}");
}

common::on_each_framework!(
    login_counter_logout_then_the_old_cookie_is_dead_in_redis,
    admin_revoke_deletes_every_session_of_the_user_in_redis,
    a_paused_redis_gets_a_fast_503_and_the_same_cookie_works_once_it_is_back,
);

#[tokio::test]
async fn the_real_binary_runs_on_redis_and_says_so_in_its_ready_line() {
    let redis = redis();
    let (demo, base) = Demo::start(&[("SESSION_STORE", "redis"), ("REDIS_URL", &redis.url())]);
    assert!(
        demo.ready.contains("(store=redis, framework=axum)"),
        "{}",
        demo.ready
    );
    let mut b = Browser::new(&base);
    assert_eq!(b.login("alice").await.status, StatusCode::OK);
    assert_eq!(b.increment().await, 1);
    assert_eq!(session_keys(&redis), 1);
}

#[test]
fn an_unreachable_redis_stops_the_start_with_a_clear_error_that_hides_the_url() {
    // A port nothing listens on: bound, then released.
    let port = common::process::free_port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}/");
    let mut demo = common::process::spawn(&[
        ("SESSION_STORE", "redis"),
        ("REDIS_URL", &url),
        ("PORT", "0"),
    ]);
    let (status, out) = demo.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "{out}");
    assert!(out.contains("SESSION_STORE=redis"), "{out}");
    assert!(out.contains("REDIS_URL"), "{out}");
    assert!(!out.contains("hunter2"), "the password leaked: {out}");
    assert!(!out.contains("listening on"), "{out}");
}
