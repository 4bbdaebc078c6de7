//! The JSON contract, driven over a real TCP socket with reqwest, once per
//! framework: every case runs as `on_axum::<case>` and `on_actix::<case>`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use common::{
    assert_anonymous, revoke_alice_on_three_clients_but_not_bob, send, start, Browser,
    CookieChange, COOKIE_NAME,
};
use futures_util::stream::BoxStream;
use reqwest::header::{HeaderValue, CACHE_CONTROL, COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sessionkit::store::memory::MemoryStore;
use sessionkit::store::{Removed, Save, SaveOutcome};
use sessionkit::{
    Config, QueryStore, Record, SessionHandle, SessionId, Sessions, Store, StoreError,
};
use sessionkit_demo::api::DemoSessions;
use sessionkit_demo::config::Framework;
use sessionkit_demo::{serve_app, DemoSession};

async fn login_me_counter_flash_logout_then_the_old_cookie_is_rejected(framework: Framework) {
    let server = start(framework, Config::default()).await;
    let mut b = Browser::new(&server.url());

    let login = b.login("alice").await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let CookieChange::Set(cookie) = login.cookie.clone() else {
        panic!("login sets the session cookie: {login:?}");
    };
    let header = &login.set_cookie_headers[0];
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(header.contains(attr), "{header} lacks {attr}");
    }
    assert_eq!(login.headers[CACHE_CONTROL], "no-store");

    let me = b.me().await;
    assert_eq!(me["logged_in"], true);
    assert_eq!(me["username"], "alice");
    assert_eq!(me["counter"], 0);
    let expires = me["expires_in_secs"].as_u64().unwrap();
    assert!(expires > 0 && expires <= 30 * 60, "{me}");

    assert_eq!(b.increment().await, 1);
    assert_eq!(b.increment().await, 2);
    assert_eq!(b.me().await["counter"], 2);

    let flash = b.flash().await;
    assert_eq!(
        flash,
        json!([{ "key": "notice", "value": "Welcome, alice" }])
    );
    assert_eq!(b.flash().await, json!([]), "reading flash consumes it");

    let logout = b.logout().await;
    assert_eq!(logout.status, StatusCode::OK);
    assert_eq!(logout.body, json!({ "logged_out": true }));
    assert_eq!(
        logout.cookie,
        CookieChange::Removed,
        "logout expires the cookie"
    );
    assert!(logout.set_cookie_headers[0].contains("Path=/"));

    // The attacker who kept the old cookie gets nothing back.
    let mut replay = Browser::with_cookie(&server.url(), &cookie);
    assert_anonymous(&replay.me().await);
    assert_eq!(
        replay.increment().await,
        1,
        "the old data does not come back"
    );
    assert_ne!(replay.cookie.as_deref(), Some(cookie.as_str()));
    assert_anonymous(&Browser::with_cookie(&server.url(), &cookie).me().await);
}

async fn a_hundred_concurrent_clients_never_see_each_others_data(framework: Framework) {
    const CLIENTS: usize = 100;
    const INCREMENTS: i64 = 10;
    let server = start(framework, Config::default()).await;
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let mut b = Browser {
            http: http.clone(),
            ..Browser::new(&server.url())
        };
        tasks.push(tokio::spawn(async move {
            let name = format!("user-{i}");
            assert_eq!(b.login(&name).await.status, StatusCode::OK);
            for n in 1..=INCREMENTS {
                assert_eq!(b.increment().await, n, "{name} saw another counter");
                let me = b.me().await;
                assert_eq!(me["username"], name.as_str(), "{name} saw {me}");
            }
            let flash = b.flash().await;
            assert_eq!(
                flash,
                json!([{ "key": "notice", "value": format!("Welcome, {name}") }])
            );
            (name, b.cookie.unwrap())
        }));
    }
    let mut cookies = Vec::new();
    for t in tasks {
        cookies.push(t.await.expect("client task"));
    }
    for (name, cookie) in &cookies {
        let me = Browser::with_cookie(&server.url(), cookie).me().await;
        assert_eq!(me["username"], name.as_str());
        assert_eq!(me["counter"], INCREMENTS);
    }
    let distinct: std::collections::HashSet<_> = cookies.iter().map(|(_, c)| c).collect();
    assert_eq!(distinct.len(), CLIENTS);
}

async fn a_request_without_a_cookie_right_after_a_logged_in_one_gets_a_fresh_empty_session(
    framework: Framework,
) {
    let server = start(framework, Config::default()).await;
    let mut alice = Browser::new(&server.url());
    alice.login("alice").await;
    alice.increment().await;
    assert_eq!(alice.me().await["username"], "alice");

    let http = reqwest::Client::new();
    let r = send(&http, &server.url(), Method::GET, "/api/me", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_anonymous(&r.body);
    assert_eq!(
        r.cookie,
        CookieChange::None,
        "reading a new session stores nothing"
    );
    let f = send(&http, &server.url(), Method::GET, "/api/flash", None, None).await;
    assert_eq!(
        f.body,
        json!({ "messages": [] }),
        "alice's flash is not shown"
    );
}

async fn login_regenerates_the_id_so_the_pre_login_cookie_is_dead(framework: Framework) {
    let server = start(framework, Config::default()).await;
    let mut b = Browser::new(&server.url());
    assert_eq!(b.increment().await, 1, "an anonymous session");
    let before = b.cookie.clone().expect("anonymous session has a cookie");

    let login = b.login("alice").await;
    let CookieChange::Set(after) = login.cookie else {
        panic!("login must send a new cookie");
    };
    assert_ne!(before, after);

    // The fixated cookie (planted by an attacker before login) is dead.
    let mut attacker = Browser::with_cookie(&server.url(), &before);
    let r = attacker.request(Method::GET, "/api/me", None).await;
    assert_anonymous(&r.body);
    // Left alone, not expired: the browser's cookie by then may be the
    // new login's, which an expiry of the same name would log out.
    assert_eq!(r.cookie, CookieChange::None, "a dead cookie is left alone");

    // The data came along to the new id.
    let me = b.me().await;
    assert_eq!(me["username"], "alice");
    assert_eq!(me["counter"], 1);
}

async fn logging_in_as_someone_else_does_not_inherit_their_counter_or_flash(framework: Framework) {
    let server = start(framework, Config::default()).await;
    let mut b = Browser::new(&server.url());
    b.login("alice").await;
    b.increment().await;
    b.login("bob").await;
    let me = b.me().await;
    assert_eq!(me["username"], "bob");
    assert_eq!(me["counter"], 0);
    // Nor her unread flash: bob sees his own welcome only.
    let flash = b.flash().await;
    let texts: Vec<&str> = flash
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Welcome, bob"]);
    b.increment().await;
    b.login("bob").await;
    assert_eq!(
        b.me().await["counter"],
        1,
        "logging in again as bob keeps bob's counter"
    );
}

async fn admin_revoke_logs_the_user_out_on_every_client_and_no_one_else(framework: Framework) {
    let server = start(framework, Config::default()).await;
    let mut admin = revoke_alice_on_three_clients_but_not_bob(&server.url()).await;

    let again = admin
        .request(Method::POST, "/api/admin/revoke/alice", None)
        .await;
    assert_eq!(again.body, json!({ "revoked": 0 }));
    let bad = admin
        .request(Method::POST, "/api/admin/revoke/%0A", None)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body["error"].is_string(), "{}", bad.text);
}

async fn tampered_and_garbage_cookies_get_a_fresh_session_not_an_error(framework: Framework) {
    let server = start(framework, Config::default()).await;
    let mut alice = Browser::new(&server.url());
    alice.login("alice").await;
    let real = alice.cookie.clone().unwrap();
    let mut flipped = real.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();

    let long = "A".repeat(5000);
    let unknown = "A".repeat(real.len());
    let headers: Vec<Vec<u8>> = vec![
        format!("{COOKIE_NAME}=garbage").into(),
        format!("{COOKIE_NAME}={flipped}").into(),
        format!("{COOKIE_NAME}={unknown}").into(),
        format!("{COOKIE_NAME}={}", &real[..real.len() - 1]).into(),
        format!("{COOKIE_NAME}={real}x").into(),
        format!("{COOKIE_NAME}={long}").into(),
        format!("{COOKIE_NAME}=").into(),
        format!("{COOKIE_NAME}=\"\"").into(),
        format!("{COOKIE_NAME}=%00%ff../..").into(),
        format!("{COOKIE_NAME}={real}; {COOKIE_NAME}={real}").into(),
        format!("{COOKIE_NAME}=garbage; {COOKIE_NAME}={real}").into(),
        b"__Host-id=\xff\xfe\x80".to_vec(),
        b";;;==;".to_vec(),
    ];
    let http = reqwest::Client::new();
    for h in &headers {
        for (method, path) in [(Method::GET, "/api/me"), (Method::POST, "/api/counter")] {
            let resp = http
                .request(method.clone(), format!("{}{path}", server.url()))
                .header(COOKIE, HeaderValue::from_bytes(h).unwrap())
                .send()
                .await
                .unwrap();
            let shown = String::from_utf8_lossy(h);
            assert_eq!(
                resp.status(),
                StatusCode::OK,
                "{method} {path} with {shown:.80}"
            );
            let body: serde_json::Value = resp.json().await.unwrap();
            if path == "/api/me" {
                assert_anonymous(&body);
            } else {
                assert_eq!(body["counter"], 1, "{shown:.80} reached someone's counter");
            }
        }
    }
    let me = alice.me().await;
    assert_eq!(me["username"], "alice");
    assert_eq!(me["counter"], 0, "alice's session was never reached");
}

/// Another site's page can make the browser post to the demo; with
/// `SameSite=Lax` it comes without the cookie, but the admin route needs
/// none, and a cookie-less post would start a fresh session whose cookie
/// replaces the user's. Refused (403), changing nothing.
async fn cross_site_posts_are_refused_and_change_nothing(framework: Framework) {
    let server = start(framework, Config::default()).await;
    let mut alice = Browser::new(&server.url());
    alice.login("alice").await;
    let from = |pairs: &[(&str, &str)]| {
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in pairs {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap();
            headers.insert(name, HeaderValue::from_str(value).unwrap());
        }
        let mut b = Browser::new(&server.url());
        b.http = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap();
        b
    };
    for headers in [
        &[("sec-fetch-site", "cross-site")][..],
        &[("sec-fetch-site", "same-site")][..],
        &[("origin", "https://evil.example")][..],
        &[("origin", "null")][..],
    ] {
        let mut evil = from(headers);
        for path in ["/api/admin/revoke/alice", "/api/counter", "/api/logout"] {
            let r = evil.request(Method::POST, path, None).await;
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{path} {headers:?}: {}",
                r.text
            );
            assert!(
                r.body["error"].as_str().unwrap().contains("cross-site"),
                "{}",
                r.text
            );
            assert_eq!(r.cookie, CookieChange::None, "{path} {headers:?}");
        }
        // Reading stays possible (a GET changes nothing).
        let r = evil.request(Method::GET, "/api/me", None).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_eq!(alice.me().await["username"], "alice", "still logged in");
    // The demo's own page: same origin, by either header.
    let mut page = from(&[("sec-fetch-site", "same-origin")]);
    assert_eq!(page.increment().await, 1);
    let mut page = from(&[("origin", &server.url())]);
    assert_eq!(page.increment().await, 1);
}

/// Reading the flash consumes it, so a cross-site `GET /api/flash` (an
/// `<img>` on another localhost port: the same *site*, so the Lax cookie
/// goes along) is refused and the messages stay. And a request naming
/// another host (a page whose domain was re-pointed at 127.0.0.1, DNS
/// rebinding, which the browser counts as same-origin) is refused whatever
/// its method, the cookie-less admin revoke included.
async fn a_cross_site_flash_read_and_a_foreign_host_name_are_refused(framework: Framework) {
    let server = start(framework, Config::default()).await;
    let mut alice = Browser::new(&server.url());
    alice.login("alice").await;
    let with = |pairs: &[(&str, String)], cookie: Option<String>| {
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in pairs {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap();
            headers.insert(name, HeaderValue::from_str(value).unwrap());
        }
        let mut b = Browser::new(&server.url());
        b.cookie = cookie;
        b.http = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap();
        b
    };
    let mut img = with(
        &[("sec-fetch-site", "same-site".to_owned())],
        alice.cookie.clone(),
    );
    // The flash route under any spelling the router accepts: actix-web
    // routes on the percent-decoded path, which the check once did not see.
    for path in ["/api/flash", "/api/fl%61sh", "/api/%66lash"] {
        let r = img.request(Method::GET, path, None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.text);
    }
    let port = server
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    for host in [format!("evil.example:{port}"), "evil.example".to_owned()] {
        let mut rebound = with(
            &[
                ("host", host.clone()),
                ("sec-fetch-site", "same-origin".to_owned()),
            ],
            None,
        );
        for (method, path) in [
            (Method::POST, "/api/admin/revoke/alice"),
            (Method::GET, "/api/me"),
        ] {
            let r = rebound.request(method.clone(), path, None).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{host} {path}: {}", r.text);
            assert!(
                r.body["error"].as_str().unwrap().contains("host"),
                "{}",
                r.text
            );
        }
    }
    assert_eq!(alice.me().await["username"], "alice", "still logged in");
    let flash = alice.flash().await;
    assert_eq!(flash.as_array().map(Vec::len), Some(1), "{flash}");
    for host in ["localhost", "127.0.0.1", "[::1]"] {
        let mut local = with(&[("host", format!("{host}:{port}"))], None);
        let r = local.request(Method::GET, "/api/me", None).await;
        assert_eq!(r.status, StatusCode::OK, "{host}: {}", r.text);
    }
}

async fn bad_login_bodies_get_a_clear_400_json_error_and_no_session(framework: Framework) {
    let server = start(framework, Config::default()).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/login", server.url());
    let too_long = "x".repeat(65);
    for body in [
        json!({ "username": "" }),
        json!({ "username": "   " }),
        json!({ "username": too_long }),
        json!({ "username": "a\u{0}b" }),
        json!({ "username": "alice\u{200B}" }),
        json!({ "username": "\u{202E}ecila" }),
        json!({ "username": " alice" }),
        json!({ "username": 42 }),
        json!({ "name": "alice" }),
        json!(["alice"]),
    ] {
        let r = http.post(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        assert!(r.headers().get("set-cookie").is_none(), "{body}");
        let err: serde_json::Value = r.json().await.unwrap();
        assert!(
            err["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{err}"
        );
    }
    for raw in ["", "{", "not json", "\u{feff}{}"] {
        let r = http
            .post(&url)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{raw:?}");
        let err: serde_json::Value = r.json().await.unwrap();
        assert!(err["error"].as_str().unwrap().contains("username"), "{err}");
    }
    let no_type = http
        .post(&url)
        .body(r#"{"username":"a"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(no_type.status(), StatusCode::BAD_REQUEST);

    let longest = "é".repeat(64);
    let ok = Browser::new(&server.url()).login(&longest).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.body["username"], longest.as_str());
}

/// A store that counts every call, to show which routes touch the store.
#[derive(Clone, Default)]
struct CountingStore {
    inner: MemoryStore<DemoSession>,
    calls: Arc<AtomicUsize>,
}

impl CountingStore {
    fn tick(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Store<DemoSession> for CountingStore {
    async fn load(&self, cookie_value: &str) -> Result<Option<Record<DemoSession>>, StoreError> {
        self.tick();
        self.inner.load(cookie_value).await
    }
    async fn save(&self, save: Save<'_, DemoSession>) -> Result<SaveOutcome, StoreError> {
        self.tick();
        self.inner.save(save).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.tick();
        self.inner.delete(id).await
    }
}

#[async_trait]
impl QueryStore<DemoSession> for CountingStore {
    fn iter(&self) -> BoxStream<'_, Result<Record<DemoSession, SessionHandle>, StoreError>> {
        self.tick();
        self.inner.iter()
    }
    async fn by_owner(
        &self,
        owner: &str,
    ) -> Result<Vec<Record<DemoSession, SessionHandle>>, StoreError> {
        self.tick();
        self.inner.by_owner(owner).await
    }
    async fn delete_owner(&self, owner: &str) -> Result<Vec<Removed>, StoreError> {
        self.tick();
        self.inner.delete_owner(owner).await
    }
    async fn delete_handle(&self, handle: &SessionHandle) -> Result<bool, StoreError> {
        self.tick();
        self.inner.delete_handle(handle).await
    }
}

async fn routes_without_the_session_make_no_store_call_and_send_no_cookie(framework: Framework) {
    let store = CountingStore::default();
    let calls = store.calls.clone();
    let sessions = Sessions::new(store, Config::default());
    let server = serve_app(framework, &DemoSessions::with_revocation(sessions), 0)
        .await
        .unwrap();
    let mut alice = Browser::new(&server.url());
    alice.login("alice").await;
    assert!(calls.load(Ordering::SeqCst) > 0, "login used the store");

    let cookie = format!("{COOKIE_NAME}={}", alice.cookie.as_deref().unwrap());
    calls.store(0, Ordering::SeqCst);
    let http = reqwest::Client::new();
    for (path, cookie) in [
        ("/healthz", None),
        ("/healthz", Some(cookie.as_str())),
        ("/healthz", Some("__Host-id=garbage")),
        ("/", Some(cookie.as_str())),
    ] {
        let r = send(&http, &server.url(), Method::GET, path, cookie, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(
            r.set_cookie_headers.is_empty(),
            "{path} sent {:?}",
            r.set_cookie_headers
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no store call for routes without a session"
    );
    let page = send(&http, &server.url(), Method::GET, "/", None, None).await;
    assert!(page.text.contains("<form id=\"login\">"));

    // The counter is live: a route that reads the session does call the store.
    assert_eq!(alice.me().await["username"], "alice");
    assert!(calls.load(Ordering::SeqCst) > 0);
}

async fn a_store_that_cannot_revoke_answers_the_admin_route_with_a_501_json_error(
    framework: Framework,
) {
    let sessions = Sessions::new(MemoryStore::<DemoSession>::new(), Config::default());
    let app = DemoSessions::without_revocation(sessions);
    let server = serve_app(framework, &app, 0).await.unwrap();
    let mut alice = Browser::new(&server.url());
    alice.login("alice").await;
    let mut admin = Browser::new(&server.url());
    let r = admin
        .request(Method::POST, "/api/admin/revoke/alice", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED, "{}", r.text);
    assert_eq!(
        r.body,
        json!({ "error": sessionkit_demo::api::CANNOT_REVOKE })
    );
    assert_eq!(r.headers[CACHE_CONTROL], "no-store");
    assert_eq!(alice.me().await["username"], "alice", "nothing was revoked");
}

async fn hostile_admin_paths_and_oversized_login_bodies_get_json_errors(framework: Framework) {
    let server = start(framework, Config::default()).await;
    let http = reqwest::Client::new();
    for path in ["%FF", "%00", "a%0Ab", &"x".repeat(65), "%E2%80%AE%0D"] {
        let r = send(
            &http,
            &server.url(),
            Method::POST,
            &format!("/api/admin/revoke/{path}"),
            None,
            None,
        )
        .await;
        assert!(
            r.status.is_client_error(),
            "{path}: {} {}",
            r.status,
            r.text
        );
        assert!(r.body["error"].is_string(), "{path}: {}", r.text);
    }
    let huge = format!("{{\"username\": \"{}\"}}", "x".repeat(4 << 20));
    let r = http
        .post(format!("{}/api/login", server.url()))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.headers().get("set-cookie").is_none());
    let err: serde_json::Value = r.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("username"), "{err}");
    // One limit on both frameworks (their defaults differ: a 300 KB body
    // was taken by axum and refused by actix-web).
    let limit = sessionkit_demo::api::LOGIN_BODY_LIMIT;
    let padded = |len: usize| {
        let head = "{\"username\": \"alice\", \"pad\": \"";
        format!("{head}{}\"}}", "x".repeat(len - head.len() - 2))
    };
    for (len, status) in [
        (limit, StatusCode::OK),
        (limit + 1, StatusCode::PAYLOAD_TOO_LARGE),
        (300_000, StatusCode::PAYLOAD_TOO_LARGE),
    ] {
        let body = padded(len);
        assert_eq!(body.len(), len);
        let r = http
            .post(format!("{}/api/login", server.url()))
            .header("content-type", "application/json")
            .header("sec-fetch-site", "same-origin")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "a login body of {len} bytes");
        assert_eq!(r.headers().get("set-cookie").is_some(), status.is_success());
    }
}

/// `HEAD` on the API's `GET` routes is refused on both frameworks (axum's
/// `get` answered it, and a `HEAD /api/flash` consumed the messages it did
/// not show).
async fn head_on_api_routes_is_refused_and_consumes_no_flash(framework: Framework) {
    let server = start(framework, Config::default()).await;
    let mut b = Browser::new(&server.url());
    b.login("alice").await;
    let http = reqwest::Client::new();
    let cookie = format!("{COOKIE_NAME}={}", b.cookie.clone().unwrap());
    for path in ["/api/flash", "/api/me"] {
        let r = http
            .head(format!("{}{path}", server.url()))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "HEAD {path}");
    }
    assert_eq!(
        b.flash().await,
        json!([{ "key": "notice", "value": "Welcome, alice" }])
    );
}

async fn unknown_api_routes_and_wrong_methods_get_json_errors_and_no_session(framework: Framework) {
    let server = start(framework, Config::default()).await;
    let http = reqwest::Client::new();
    for (method, path, status) in [
        (Method::GET, "/api/nope", StatusCode::NOT_FOUND),
        (Method::POST, "/api/admin", StatusCode::NOT_FOUND),
        (Method::GET, "/api/login", StatusCode::METHOD_NOT_ALLOWED),
        (Method::DELETE, "/api/me", StatusCode::METHOD_NOT_ALLOWED),
        (
            Method::GET,
            "/api/admin/revoke/alice",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ] {
        let r = send(&http, &server.url(), method.clone(), path, None, None).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.text);
        assert!(r.body["error"].is_string(), "{method} {path}: {}", r.text);
        assert_eq!(r.headers[CACHE_CONTROL], "no-store", "{method} {path}");
        assert!(
            r.headers.get("set-cookie").is_none(),
            "{method} {path} started a session"
        );
    }
}

common::on_each_framework!(
    unknown_api_routes_and_wrong_methods_get_json_errors_and_no_session,
    login_me_counter_flash_logout_then_the_old_cookie_is_rejected,
    a_hundred_concurrent_clients_never_see_each_others_data,
    a_request_without_a_cookie_right_after_a_logged_in_one_gets_a_fresh_empty_session,
    login_regenerates_the_id_so_the_pre_login_cookie_is_dead,
    logging_in_as_someone_else_does_not_inherit_their_counter_or_flash,
    admin_revoke_logs_the_user_out_on_every_client_and_no_one_else,
    tampered_and_garbage_cookies_get_a_fresh_session_not_an_error,
    bad_login_bodies_get_a_clear_400_json_error_and_no_session,
    routes_without_the_session_make_no_store_call_and_send_no_cookie,
    a_store_that_cannot_revoke_answers_the_admin_route_with_a_501_json_error,
    hostile_admin_paths_and_oversized_login_bodies_get_json_errors,
    cross_site_posts_are_refused_and_change_nothing,
    a_cross_site_flash_read_and_a_foreign_host_name_are_refused,
    head_on_api_routes_is_refused_and_consumes_no_flash,
);
