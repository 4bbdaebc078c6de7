//! The degradation policy at the HTTP edge, through a real axum server on a
//! real socket and a real HTTP client, with a store that fails on command
//! (`FaultyStore` over `MemoryStore`) behind `Resilient`.
//!
//! The policy (see `sessionkit::http` and `sessionkit::resilience`): a failed
//! load answers 503 + Retry-After with a short text body; `Option<Session<T>>`
//! runs anonymously; a failed save replaces the response and sends no
//! Set-Cookie; the client's cookie is never overwritten while the store is down.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, RETRY_AFTER, SET_COOKIE};
use reqwest::StatusCode;
use sessionkit::http::ErrorResponse;
use sessionkit::resilience::fault::{Fault, FaultSwitch, FaultyStore};
use sessionkit::resilience::{
    BreakerState, ManualMonotonicClock, ResilienceConfig, ResilienceConfigBuilder, Resilient,
};
use sessionkit::store::memory::MemoryStore;
use sessionkit::{Config, Session, SessionLayer, Sessions, StoreError};

#[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
struct Visits {
    n: u64,
}

type Store = Resilient<FaultyStore<MemoryStore<Visits>>>;

struct App {
    addr: SocketAddr,
    switch: FaultSwitch,
    sessions: Sessions<Visits, Store>,
    http: reqwest::Client,
}

async fn count(s: Session<Visits>) -> String {
    let mut d = s.data_mut();
    d.n += 1;
    d.n.to_string()
}

async fn peek(s: Option<Session<Visits>>) -> String {
    match s {
        Some(s) => format!("n={}", s.data().n),
        None => "anonymous".into(),
    }
}

async fn logout(s: Session<Visits>) -> &'static str {
    s.destroy();
    "bye"
}

fn resilience() -> ResilienceConfigBuilder {
    ResilienceConfig::builder()
        .attempt_timeout(Duration::from_millis(200))
        .operation_timeout(Duration::from_millis(400))
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        // Most cases look at one failing request at a time; the breaker has its own case.
        .failure_threshold(1000)
}

async fn start(
    resilience: ResilienceConfigBuilder,
    layer: impl FnOnce(SessionLayer<Visits>) -> SessionLayer<Visits>,
) -> App {
    let inner = FaultyStore::new(MemoryStore::new());
    let switch = inner.switch();
    let store = Resilient::new(inner, resilience.build().unwrap());
    let config = Config::builder()
        .dangerously_allow_insecure_http()
        .build()
        .unwrap();
    let sessions = Sessions::new(store, config);
    // The handler of /write-then-fail turns the store off after loading, so
    // the save at the end of the request fails.
    let sw = switch.clone();
    let write_then_fail = move |s: Session<Visits>| {
        let sw = sw.clone();
        async move {
            s.data_mut().n += 100;
            sw.set(Fault::Unavailable);
            "the handler's own answer"
        }
    };
    let sw = switch.clone();
    let logout_then_fail = move |s: Session<Visits>| {
        let sw = sw.clone();
        async move {
            s.destroy();
            sw.set(Fault::Unavailable);
            "bye"
        }
    };
    let app = Router::new()
        .route("/count", post(count))
        .route("/peek", get(peek))
        .route("/logout", post(logout))
        .route("/write-then-fail", post(write_then_fail))
        .route("/logout-then-fail", post(logout_then_fail))
        .layer(layer(SessionLayer::new(&sessions)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    App {
        addr,
        switch,
        sessions,
        http: reqwest::Client::new(),
    }
}

struct Reply {
    status: StatusCode,
    set_cookie: Vec<String>,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl App {
    async fn call(&self, method: &str, path: &str, cookie: Option<&str>) -> Reply {
        let url = format!("http://{}{}", self.addr, path);
        let mut req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        };
        if let Some(c) = cookie {
            req = req.header(COOKIE, format!("id={c}"));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let set_cookie = headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        Reply {
            status,
            set_cookie,
            headers,
            body: resp.text().await.unwrap(),
        }
    }

    /// A session with n = 1, and its cookie value.
    async fn session(&self) -> String {
        let r = self.call("POST", "/count", None).await;
        assert_eq!(r.status, StatusCode::OK);
        cookie_value(&r.set_cookie[0])
    }
}

fn cookie_value(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().unwrap();
    pair.strip_prefix("id=").unwrap().to_owned()
}

fn assert_documented_503(r: &Reply) {
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.headers[RETRY_AFTER], "1");
    assert_eq!(r.headers[CACHE_CONTROL], "no-store");
    assert!(r.headers[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(
        r.body.contains("temporarily unavailable"),
        "a short text body, not an empty 500: {:?}",
        r.body
    );
    assert!(r.set_cookie.is_empty(), "no Set-Cookie: {:?}", r.set_cookie);
}

#[tokio::test]
async fn a_failed_load_answers_503_with_retry_after_and_a_text_body() {
    let app = start(resilience(), |l| l).await;
    let cookie = app.session().await;
    app.switch.set(Fault::Unavailable);
    assert_documented_503(&app.call("POST", "/count", Some(&cookie)).await);
}

#[tokio::test]
async fn a_request_without_a_cookie_needs_no_store_and_gets_a_session() {
    // A fresh session is built without a load; only its save needs the store.
    let app = start(resilience(), |l| l).await;
    app.switch.set(Fault::Unavailable);
    let r = app.call("POST", "/count", None).await;
    assert_documented_503(&r);
    app.switch.set(Fault::None);
    let r = app.call("POST", "/count", None).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "1"));
}

#[tokio::test]
async fn anonymous_mode_serves_the_request_without_a_session_or_a_cookie() {
    let app = start(resilience(), |l| l).await;
    let cookie = app.session().await;
    app.switch.set(Fault::Unavailable);
    let r = app.call("GET", "/peek", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "anonymous");
    assert!(r.set_cookie.is_empty());
    app.switch.set(Fault::None);
    let r = app.call("GET", "/peek", Some(&cookie)).await;
    assert_eq!(r.body, "n=1");
}

#[tokio::test]
async fn a_failed_save_replaces_the_response_and_sets_no_cookie() {
    let app = start(resilience(), |l| l).await;
    // A new session: the cookie that would name it must not be sent.
    let r = app.call("POST", "/write-then-fail", None).await;
    assert_documented_503(&r);
    assert!(!r.body.contains("the handler's own answer"));
    // An existing session: its data stays as it was.
    app.switch.set(Fault::None);
    let cookie = app.session().await;
    let r = app.call("POST", "/write-then-fail", Some(&cookie)).await;
    assert_documented_503(&r);
    app.switch.set(Fault::None);
    let r = app.call("GET", "/peek", Some(&cookie)).await;
    assert_eq!(r.body, "n=1", "the failed write left nothing behind");
}

#[tokio::test]
async fn the_clients_cookie_survives_an_outage_untouched() {
    let app = start(resilience(), |l| l).await;
    let cookie = app.session().await;
    app.switch.set(Fault::Unavailable);
    for (method, path) in [("POST", "/count"), ("GET", "/peek"), ("POST", "/logout")] {
        let r = app.call(method, path, Some(&cookie)).await;
        assert!(
            r.set_cookie.is_empty(),
            "{method} {path} during the outage sent {:?}",
            r.set_cookie
        );
    }
    app.switch.set(Fault::None);
    let r = app.call("POST", "/count", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "2", "the same cookie finds the same session");
    assert!(r.set_cookie.is_empty(), "nothing to change in the browser");
}

#[tokio::test]
async fn a_failed_logout_is_reported_and_the_session_is_not_pretended_gone() {
    let app = start(resilience(), |l| l).await;
    let cookie = app.session().await;
    // The load works, the delete at the end of the request does not.
    let r = app.call("POST", "/logout-then-fail", Some(&cookie)).await;
    assert_documented_503(&r);
    app.switch.set(Fault::None);
    let r = app.call("GET", "/peek", Some(&cookie)).await;
    assert_eq!(r.body, "n=1", "the session still exists, and says so");
    app.switch.set(Fault::None);
    let r = app.call("POST", "/logout", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.set_cookie[0].contains("Max-Age=0"), "{:?}", r.set_cookie);
    let r = app.call("GET", "/peek", Some(&cookie)).await;
    assert_eq!(r.body, "n=0", "logged out: a fresh session");
}

#[tokio::test]
async fn an_open_circuit_answers_the_same_503_without_calling_the_store() {
    let clock = ManualMonotonicClock::new();
    let app = start(
        resilience()
            .max_attempts(1)
            .failure_threshold(3)
            .reset_timeout(Duration::from_secs(30))
            .clock(clock.clone()),
        |l| l,
    )
    .await;
    let cookie = app.session().await;
    app.switch.set(Fault::Unavailable);
    for _ in 0..3 {
        assert_documented_503(&app.call("POST", "/count", Some(&cookie)).await);
    }
    assert_eq!(app.sessions.store().breaker().state(), BreakerState::Open);
    let calls = app.switch.calls();
    for _ in 0..10 {
        assert_documented_503(&app.call("POST", "/count", Some(&cookie)).await);
    }
    assert_eq!(
        app.switch.calls(),
        calls,
        "fail fast: the store is left alone"
    );
    // The store comes back; after the reset timeout one probe closes the circuit.
    app.switch.set(Fault::None);
    assert_documented_503(&app.call("POST", "/count", Some(&cookie)).await);
    clock.advance(Duration::from_secs(30));
    let r = app.call("POST", "/count", Some(&cookie)).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "2"));
    assert_eq!(app.sessions.store().breaker().state(), BreakerState::Closed);
}

#[tokio::test]
async fn a_hung_store_answers_503_once_the_operation_timeout_is_spent() {
    let app = start(resilience(), |l| l).await;
    let cookie = app.session().await;
    app.switch.set(Fault::Hang);
    let started = Instant::now();
    let r = app.call("POST", "/count", Some(&cookie)).await;
    let took = started.elapsed();
    assert_documented_503(&r);
    // Generous: the bound is 400 ms; this only shows the request is not stuck.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    println!("hung store: 503 after {took:?} (operation_timeout 400 ms)");
}

#[tokio::test]
async fn a_custom_error_responder_shapes_the_answer() {
    let app = start(resilience(), |l| {
        l.error_responder(|e: &StoreError| {
            ErrorResponse::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("maintenance ({})\n", e.kind()),
            )
            .retry_after(30)
        })
    })
    .await;
    let cookie = app.session().await;
    app.switch.set(Fault::Unavailable);
    let r = app.call("POST", "/count", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers[RETRY_AFTER], "30");
    assert_eq!(r.body, "maintenance (unavailable)\n");
    assert!(r.set_cookie.is_empty());
}

#[tokio::test]
async fn a_json_api_gets_its_store_failures_as_json() {
    let app = start(resilience(), |l| {
        l.error_responder(|e: &StoreError| {
            ErrorResponse::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({ "error": "sessions_unavailable", "kind": e.kind() }),
            )
            .retry_after(2)
        })
    })
    .await;
    let cookie = app.session().await;
    app.switch.set(Fault::Unavailable);
    let r = app.call("POST", "/count", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers[CONTENT_TYPE], "application/json");
    assert_eq!(r.headers[CACHE_CONTROL], "no-store");
    assert_eq!(r.headers[RETRY_AFTER], "2");
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["error"], "sessions_unavailable");
}

#[tokio::test]
async fn an_undecodable_stored_session_starts_a_fresh_one_instead_of_failing() {
    // E.g. a deploy changed the session type: old sessions cannot be read.
    let app = start(resilience().failure_threshold(1), |l| l).await;
    let cookie = app.session().await;
    app.switch.set_for(Fault::Undecodable, 1);
    let r = app.call("POST", "/count", Some(&cookie)).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::OK, "1"),
        "a fresh session"
    );
    let fresh = cookie_value(&r.set_cookie[0]);
    assert_ne!(fresh, cookie, "the fresh session has its own id");
    assert_eq!(
        app.sessions.store().breaker().state(),
        BreakerState::Closed,
        "bad data is not a store failure"
    );
    // A read-only request with such a cookie drops the cookie it cannot use.
    app.switch.set_for(Fault::Undecodable, 1);
    let r = app.call("GET", "/peek", Some(&cookie)).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "n=0"));
    assert!(r.set_cookie[0].contains("Max-Age=0"), "{:?}", r.set_cookie);
}
