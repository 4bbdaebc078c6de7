//! Test helpers: start the demo in-process on an ephemeral port and talk to
//! it over TCP with reqwest, handling the session cookie by hand (read
//! `Set-Cookie`, send `Cookie`) so tests see exactly what a browser would.

#![allow(dead_code)] // each test binary uses a different subset

pub mod process;

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sessionkit::Config;
use sessionkit_demo::config::Framework;
use sessionkit_demo::{serve_with, DemoConfig, Running};

/// The demo's session cookie name (the library default).
pub const COOKIE_NAME: &str = "__Host-id";

/// Instantiates each case, an `async fn(Framework)`, once per framework:
/// `on_axum::<case>` and `on_actix::<case>`.
#[allow(unused_macros)]
macro_rules! on_each_framework {
    ($($case:ident),* $(,)?) => {
        mod on_axum {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(sessionkit_demo::config::Framework::Axum).await
                }
            )*
        }
        mod on_actix {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(sessionkit_demo::config::Framework::Actix).await
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_each_framework;

/// Starts the demo (memory store) on an ephemeral port with `framework` and
/// this session configuration.
pub async fn start(framework: Framework, config: Config) -> Running {
    let demo = DemoConfig {
        port: 0,
        framework,
        ..DemoConfig::default()
    };
    serve_with(&demo, config).await.expect("demo starts")
}

/// What a response did to the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieChange {
    /// No `Set-Cookie` for the session cookie.
    None,
    /// Set to this value.
    Set(String),
    /// Expired (`Max-Age=0`).
    Removed,
}

/// One response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub cookie: CookieChange,
    pub set_cookie_headers: Vec<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

fn cookie_change(headers: &reqwest::header::HeaderMap) -> CookieChange {
    let mut change = CookieChange::None;
    for h in headers.get_all(SET_COOKIE) {
        let h = h.to_str().expect("ASCII Set-Cookie");
        let first = h.split(';').next().unwrap_or("");
        let Some((name, value)) = first.split_once('=') else {
            continue;
        };
        if name.trim() != COOKIE_NAME {
            continue;
        }
        assert_eq!(change, CookieChange::None, "two session Set-Cookie headers");
        let expired = h
            .split(';')
            .any(|a| a.trim().eq_ignore_ascii_case("Max-Age=0"));
        change = if expired || value.is_empty() {
            CookieChange::Removed
        } else {
            CookieChange::Set(value.to_owned())
        };
    }
    change
}

/// Sends one request with an optional raw `Cookie` header.
pub async fn send(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    cookie_header: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut req = http.request(method, format!("{base}{path}"));
    if let Some(c) = cookie_header {
        req = req.header(COOKIE, c);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request goes through");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body reads");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        cookie: cookie_change(&headers),
        set_cookie_headers: headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|h| h.to_str().unwrap().to_owned())
            .collect(),
        headers,
        body,
        text,
    }
}

/// A client that keeps the session cookie like a browser does.
#[derive(Clone)]
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    /// The session cookie value it holds.
    pub cookie: Option<String>,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Browser {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            cookie: None,
        }
    }

    /// A browser that starts out holding `cookie`.
    pub fn with_cookie(base: &str, cookie: &str) -> Self {
        Browser {
            cookie: Some(cookie.to_owned()),
            ..Browser::new(base)
        }
    }

    pub async fn request(&mut self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let header = self.cookie.as_ref().map(|c| format!("{COOKIE_NAME}={c}"));
        let reply = send(
            &self.http,
            &self.base,
            method,
            path,
            header.as_deref(),
            body,
        )
        .await;
        match &reply.cookie {
            CookieChange::None => {}
            CookieChange::Set(v) => self.cookie = Some(v.clone()),
            CookieChange::Removed => self.cookie = None,
        }
        reply
    }

    pub async fn me(&mut self) -> Value {
        let r = self.request(Method::GET, "/api/me", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body
    }

    pub async fn login(&mut self, username: &str) -> Reply {
        self.request(
            Method::POST,
            "/api/login",
            Some(serde_json::json!({ "username": username })),
        )
        .await
    }

    pub async fn increment(&mut self) -> i64 {
        let r = self.request(Method::POST, "/api/counter", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body["counter"].as_i64().expect("counter is a number")
    }

    pub async fn flash(&mut self) -> Value {
        let r = self.request(Method::GET, "/api/flash", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body["messages"].clone()
    }

    pub async fn logout(&mut self) -> Reply {
        self.request(Method::POST, "/api/logout", None).await
    }
}

/// Asserts that a `/api/me` answer is a fresh anonymous session.
pub fn assert_anonymous(me: &Value) {
    assert_eq!(me["logged_in"], false, "{me}");
    assert_eq!(me["username"], Value::Null, "{me}");
    assert_eq!(me["counter"], 0, "{me}");
}

/// Logs in alice on three clients and bob on one, revokes alice through
/// the admin route and checks that exactly alice's three sessions died
/// (their cookies are expired) and bob's lives. Returns the admin's browser.
pub async fn revoke_alice_on_three_clients_but_not_bob(base: &str) -> Browser {
    let mut alices = Vec::new();
    for _ in 0..3 {
        let mut b = Browser::new(base);
        b.login("alice").await;
        b.increment().await;
        alices.push(b);
    }
    let mut bob = Browser::new(base);
    bob.login("bob").await;

    let mut admin = Browser::new(base);
    let r = admin
        .request(Method::POST, "/api/admin/revoke/alice", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, json!({ "revoked": 3 }));
    assert_eq!(
        r.cookie,
        CookieChange::None,
        "revoking does not touch the admin's session"
    );

    for b in &mut alices {
        let r = b.request(Method::GET, "/api/me", None).await;
        assert_anonymous(&r.body);
        // A cookie naming no session is left alone (see `sessionkit::sessions`).
        assert_eq!(r.cookie, CookieChange::None);
    }
    assert_eq!(bob.me().await["username"], "bob");
    admin
}
