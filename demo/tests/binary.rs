//! The real binary, as `cargo run -p sessionkit-demo` starts it: configured
//! by the environment, logging one ready line, serving over TCP.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::process::{free_port, spawn, wait_for};

#[tokio::test]
async fn the_real_binary_logs_a_ready_line_and_serves_a_login_round_trip() {
    let port = free_port();
    let mut demo = spawn(&[("PORT", &port.to_string())]);
    let out = wait_for(&demo, "listening on", Duration::from_secs(60))
        .unwrap_or_else(|seen| panic!("no ready line; output so far:\n{seen}"));
    assert!(
        out.contains(&format!(
            "sessionkit-demo listening on http://localhost:{port} (store=memory, framework=axum)"
        )),
        "{out}"
    );

    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let login = http
        .post(format!("{base}/api/login"))
        .json(&serde_json::json!({ "username": "alice" }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let set_cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.contains("Secure"),
        "secure cookies by default: {set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let me: serde_json::Value = http
        .get(format!("{base}/api/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["logged_in"], true);
    assert_eq!(me["username"], "alice");

    // SIGTERM stops it gracefully (sent by pid to the child we started).
    let pid = demo.child.id().to_string();
    let term = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = demo.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn unsupported_store_or_framework_stops_the_start_with_the_supported_values() {
    let mut demo = spawn(&[
        ("SESSION_STORE", "mongo"),
        ("DEMO_FRAMEWORK", "rocket"),
        ("PORT", "0"),
    ]);
    let status = demo.child.wait().unwrap();
    assert!(!status.success());
    let mut out = String::new();
    while let Ok(line) = demo.lines.recv_timeout(Duration::from_secs(10)) {
        out.push_str(&line);
        out.push('\n');
    }
    assert!(
        out.contains("SESSION_STORE=\"mongo\" is not supported; supported values: memory, redis, cookie, cluster"),
        "{out}"
    );
    assert!(
        out.contains("DEMO_FRAMEWORK=\"rocket\" is not supported; supported values: axum, actix"),
        "{out}"
    );
    assert!(!out.contains("listening on"), "{out}");
}

#[tokio::test]
async fn the_real_binary_serves_the_same_contract_on_actix_and_stops_on_sigterm() {
    let (mut demo, base) = common::process::Demo::start(&[("DEMO_FRAMEWORK", "actix")]);
    let mut b = common::Browser::new(&base);
    let login = b.login("alice").await;
    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(b.increment().await, 1);
    assert_eq!(b.me().await["username"], "alice");
    let page = common::send(&b.http, &base, reqwest::Method::GET, "/", None, None).await;
    assert!(page.text.contains("<form id=\"login\">"));

    let pid = demo.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let (status, out) = demo.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{out}");
}
