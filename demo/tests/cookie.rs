//! `SESSION_STORE=cookie`: the whole session sealed in the cookie with a key
//! from `SESSION_SECRET`, nothing server-side. Over a real TCP socket, once
//! per framework, plus the real binary without a secret.

mod common;

use std::time::Duration;

use common::process::Demo;
use common::{assert_anonymous, Browser, CookieChange};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sessionkit_demo::api::CANNOT_REVOKE;
use sessionkit_demo::config::{DemoConfig, Framework, SessionSecret, StoreKind};
use sessionkit_demo::{serve, Running};

const SECRET: &str = "a demo secret of at least thirty-two bytes";

async fn start(framework: Framework, secret: &str) -> Running {
    let config = DemoConfig {
        store: StoreKind::Cookie,
        session_secret: Some(SessionSecret::new(secret)),
        framework,
        port: 0,
        ..DemoConfig::default()
    };
    serve(&config)
        .await
        .expect("the demo starts on the cookie store")
}

async fn the_session_travels_in_the_cookie_and_opens_on_any_process_with_the_secret(
    framework: Framework,
) {
    let a = start(framework, SECRET).await;
    let mut b = Browser::new(&a.url());
    let login = b.login("alice").await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    assert_eq!(b.increment().await, 1);
    assert_eq!(b.increment().await, 2);
    assert_eq!(
        b.flash().await,
        json!([{ "key": "notice", "value": "Welcome, alice" }])
    );
    let cookie = b.cookie.clone().unwrap();
    assert!(
        !cookie.contains("alice"),
        "the data is sealed, not readable"
    );

    // A second process shares nothing with the first but the secret.
    let other = start(framework, SECRET).await;
    let me = Browser::with_cookie(&other.url(), &cookie).me().await;
    assert_eq!(
        (me["username"].as_str(), me["counter"].as_i64()),
        (Some("alice"), Some(2))
    );

    // A process with another secret cannot open it: a fresh session.
    let stranger = start(framework, "another secret, also 32 bytes or more").await;
    assert_anonymous(&Browser::with_cookie(&stranger.url(), &cookie).me().await);

    // One flipped character and the seal breaks.
    let mut bytes = cookie.clone().into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert_anonymous(&Browser::with_cookie(&a.url(), &tampered).me().await);
}

async fn logout_expires_the_cookie_but_a_copy_taken_before_still_opens(framework: Framework) {
    let server = start(framework, SECRET).await;
    let mut b = Browser::new(&server.url());
    b.login("alice").await;
    b.increment().await;
    let copy = b.cookie.clone().unwrap();

    let logout = b.logout().await;
    assert_eq!(logout.body, json!({ "logged_out": true }));
    assert_eq!(
        logout.cookie,
        CookieChange::Removed,
        "the browser forgets it"
    );
    assert_anonymous(&b.me().await);

    // The stateless store's documented limit: nothing server-side to
    // delete, so a copy replays until its idle or absolute deadline.
    let me = Browser::with_cookie(&server.url(), &copy).me().await;
    assert_eq!(me["username"], "alice", "{me}");
}

async fn revoking_a_user_is_a_501_json_error_since_sessions_live_in_browsers(framework: Framework) {
    let server = start(framework, SECRET).await;
    let mut alice = Browser::new(&server.url());
    alice.login("alice").await;
    let r = Browser::new(&server.url())
        .request(Method::POST, "/api/admin/revoke/alice", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED, "{}", r.text);
    assert_eq!(r.body, json!({ "error": CANNOT_REVOKE }));
    assert_eq!(alice.me().await["username"], "alice");
}

common::on_each_framework!(
    the_session_travels_in_the_cookie_and_opens_on_any_process_with_the_secret,
    logout_expires_the_cookie_but_a_copy_taken_before_still_opens,
    revoking_a_user_is_a_501_json_error_since_sessions_live_in_browsers,
);

#[tokio::test]
async fn without_a_secret_the_binary_warns_and_runs_on_a_throw_away_one() {
    let (demo, base) = Demo::start(&[("SESSION_STORE", "cookie")]);
    assert!(
        demo.ready.contains("SESSION_SECRET is not set"),
        "{}",
        demo.ready
    );
    assert!(
        demo.ready.contains("(store=cookie, framework=axum)"),
        "{}",
        demo.ready
    );
    let mut b = Browser::new(&base);
    assert_eq!(b.login("alice").await.status, StatusCode::OK);
    assert_eq!(b.increment().await, 1);
    assert_eq!(b.me().await["username"], "alice");
}

#[test]
fn a_short_secret_stops_the_start_without_printing_it() {
    let mut demo = common::process::spawn(&[
        ("SESSION_STORE", "cookie"),
        ("SESSION_SECRET", "hunter2"),
        ("PORT", "0"),
    ]);
    let (status, out) = demo.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("SESSION_SECRET is 7 bytes; at least 32"),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "{out}");
}
