//! The real binary, as `cargo run -p sessionkit-demo` starts it: configured
//! by the environment, logging one ready line, serving over TCP.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sessionkit-demo");

/// Kills the child (by its pid) if a test fails before stopping it.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward(stream: impl Read + Send + 'static, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
}

fn spawn(env: &[(&str, &str)]) -> Demo {
    let mut cmd = Command::new(BIN);
    for var in [
        "SESSION_STORE",
        "DEMO_FRAMEWORK",
        "PORT",
        "DEMO_INSECURE_COOKIES",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the demo binary starts");
    let (tx, lines) = mpsc::channel();
    forward(child.stdout.take().unwrap(), tx.clone());
    forward(child.stderr.take().unwrap(), tx);
    Demo { child, lines }
}

/// Reads output lines until one contains `needle`; returns everything read.
fn wait_for(demo: &Demo, needle: &str, within: Duration) -> Result<String, String> {
    let deadline = Instant::now() + within;
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match demo.lines.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(needle) {
                    return Ok(seen);
                }
            }
            Err(_) => return Err(seen),
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

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
        out.contains("SESSION_STORE=\"mongo\" is not supported; supported values: memory"),
        "{out}"
    );
    assert!(
        out.contains("DEMO_FRAMEWORK=\"rocket\" is not supported; supported values: axum"),
        "{out}"
    );
    assert!(!out.contains("listening on"), "{out}");
}
