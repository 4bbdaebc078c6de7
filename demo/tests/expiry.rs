//! Idle timeout and absolute lifetime, enforced by the library and seen
//! through the demo over TCP. Time moves with a `ManualClock` injected into
//! the session `Config` (the demo gives the store the same clock).

mod common;

use std::time::Duration;

use common::{assert_anonymous, start, Browser, CookieChange};
use reqwest::Method;
use sessionkit::{Config, ManualClock};
use sessionkit_demo::config::Framework;

const IDLE: Duration = Duration::from_secs(60);

fn config(clock: &ManualClock, absolute: Duration) -> Config {
    Config::builder()
        .idle_timeout(IDLE)
        .absolute_lifetime(absolute)
        .clock(clock.clone())
        .build()
        .unwrap()
}

async fn an_idle_session_dies_after_the_idle_timeout_but_activity_keeps_it_alive(
    framework: Framework,
) {
    let clock = ManualClock::new();
    let server = start(framework, config(&clock, Duration::from_secs(3600))).await;
    let mut active = Browser::new(&server.url());
    let mut idle = Browser::new(&server.url());
    active.login("active").await;
    idle.login("idle").await;

    clock.advance(Duration::from_secs(20));
    let me = active.me().await;
    assert_eq!(me["username"], "active");
    assert_eq!(
        me["expires_in_secs"], 40,
        "the idle deadline is 60 s after login"
    );
    clock.advance(Duration::from_secs(25)); // t = 45 s
    assert_eq!(
        active.me().await["expires_in_secs"],
        60,
        "a load in the last half of the window records its activity first"
    );

    clock.advance(Duration::from_secs(16)); // t = 61 s
    let r = idle.request(Method::GET, "/api/me", None).await;
    assert_anonymous(&r.body);
    assert_eq!(
        r.cookie,
        CookieChange::Removed,
        "the dead cookie is expired"
    );
    assert_eq!(
        active.me().await["username"],
        "active",
        "activity at 45 s moved its deadline"
    );

    clock.advance(Duration::from_secs(29)); // t = 90 s: still alive, past the first deadline
    assert_eq!(active.me().await["username"], "active");

    clock.advance(Duration::from_secs(61)); // t = 151 s: 61 s since the last activity
    let r = active.request(Method::GET, "/api/me", None).await;
    assert_anonymous(&r.body);
    assert_eq!(r.cookie, CookieChange::Removed);
}

async fn an_active_session_still_dies_at_its_absolute_lifetime(framework: Framework) {
    let clock = ManualClock::new();
    let server = start(framework, config(&clock, Duration::from_secs(300))).await;
    let mut b = Browser::new(&server.url());
    b.login("alice").await;
    let cookie = b.cookie.clone().unwrap();

    // Active every 40 s: the idle timeout (60 s) never strikes.
    for step in 1..=7 {
        clock.advance(Duration::from_secs(40));
        let me = b.me().await;
        assert_eq!(me["username"], "alice", "at {} s", step * 40);
        let left = 300 - step * 40;
        assert!(
            me["expires_in_secs"].as_u64().unwrap() <= left,
            "expires_in_secs never reaches past the absolute deadline: {me} at {} s",
            step * 40
        );
    }
    assert_eq!(b.cookie.as_deref(), Some(cookie.as_str()));

    clock.advance(Duration::from_secs(40)); // t = 320 s, 40 s after the last activity
    let r = b.request(Method::GET, "/api/me", None).await;
    assert_anonymous(&r.body);
    assert_eq!(r.cookie, CookieChange::Removed);
    assert_anonymous(&Browser::with_cookie(&server.url(), &cookie).me().await);
}

common::on_each_framework!(
    an_idle_session_dies_after_the_idle_timeout_but_activity_keeps_it_alive,
    an_active_session_still_dies_at_its_absolute_lifetime,
);
