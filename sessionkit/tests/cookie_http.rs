//! `CookieStore` through the real HTTP stack: axum + `SessionLayer` served on
//! a TCP socket, driven by reqwest. Every hostile cookie must yield a fresh
//! session (200, counter back at 1), never a panic or a 500.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use sessionkit::codec::Codec;
use sessionkit::expiry::ExpiryPolicy;
use sessionkit::http::{DefaultErrorResponder, ErrorResponder, ErrorResponse};
use sessionkit::keys::{KeyPurpose, KeyRing};
use sessionkit::store::cookie::CookieStore;
use sessionkit::{
    Clock, Config, ManualClock, Record, Session, SessionId, SessionLayer, Sessions, StoreError,
};

const S1: &str = "first secret, thirty-two bytes or more";
const S2: &str = "second secret, thirty-two bytes or more";

#[derive(Serialize, Deserialize, Default, Clone)]
struct Data {
    counter: u64,
    blob: String,
}

#[derive(Deserialize, Debug)]
struct Seen {
    counter: u64,
    new: bool,
}

async fn count(session: Session<Data>) -> Json<serde_json::Value> {
    let n = {
        let mut d = session.data_mut();
        d.counter += 1;
        d.counter
    };
    Json(serde_json::json!({ "counter": n, "new": session.is_new() }))
}

async fn peek(session: Session<Data>) -> Json<serde_json::Value> {
    let n = session.data().counter;
    Json(serde_json::json!({ "counter": n, "new": session.is_new() }))
}

async fn big(session: Session<Data>) -> &'static str {
    // Random base64 text: gzip cannot squeeze 12 KB of it under 4 KB.
    let blob: String = (0..300).map(|_| SessionId::generate().encode()).collect();
    session.data_mut().blob = blob;
    "stored"
}

/// Starts a session through the core, changed by `f`; its cookie.
async fn first_cookie<T: sessionkit::SessionData, S: sessionkit::Store<T>>(
    sessions: &Sessions<T, S>,
    f: impl FnOnce(&mut T),
) -> String {
    let first = sessions.load(None).await.unwrap();
    f(&mut first.data_mut());
    let action = sessions.commit(&first, None).await.unwrap();
    action.value().expect("a new session's cookie").to_owned()
}

fn ring(keys: &[(u16, &str)]) -> KeyRing {
    let mut b = KeyRing::builder().current(keys[0].0, keys[0].1);
    for (id, s) in &keys[1..] {
        b = b.previous(*id, s);
    }
    b.build().unwrap()
}

fn config(name: &str, clock: &ManualClock) -> Config {
    Config::builder()
        .cookie_name(name)
        .idle_timeout(Duration::from_secs(30 * 60))
        .absolute_lifetime(Duration::from_secs(60 * 60))
        .clock(clock.clone())
        .build()
        .unwrap()
}

struct App {
    base: String,
    name: String,
    http: reqwest::Client,
}

impl App {
    async fn start(ring: &KeyRing, config: Config) -> App {
        Self::start_with(ring, config, None::<DefaultErrorResponder>).await
    }

    async fn start_with(
        ring: &KeyRing,
        config: Config,
        responder: Option<impl ErrorResponder>,
    ) -> App {
        let name = config.cookie().name().to_owned();
        let store = CookieStore::<Data>::new(ring, &config);
        let sessions = Sessions::new(store, config);
        let mut layer = SessionLayer::new(&sessions);
        if let Some(r) = responder {
            layer = layer.error_responder(r);
        }
        let app = Router::new()
            .route("/count", get(count))
            .route("/peek", get(peek))
            .route("/big", get(big))
            .layer(layer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        App {
            base: format!("http://{addr}"),
            name,
            http: reqwest::Client::new(),
        }
    }

    /// GETs `path` with the session cookie (if any) under this app's cookie name.
    async fn get(&self, path: &str, cookie: Option<&str>) -> (StatusCode, Option<String>, String) {
        self.get_as(path, &self.name, cookie).await
    }

    async fn get_as(
        &self,
        path: &str,
        name: &str,
        cookie: Option<&str>,
    ) -> (StatusCode, Option<String>, String) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(v) = cookie {
            req = req.header("cookie", format!("{name}={v}"));
        }
        let resp = req.send().await.expect("server answers");
        let status = resp.status();
        let set = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|h| h.to_str().ok())
            .find_map(|h| {
                let (pair, _) = h.split_once(';').unwrap_or((h, ""));
                let (k, v) = pair.split_once('=')?;
                (k == self.name).then(|| v.to_owned())
            });
        (status, set, resp.text().await.unwrap())
    }

    async fn seen(&self, path: &str, cookie: Option<&str>) -> (Seen, Option<String>) {
        let (status, set, body) = self.get(path, cookie).await;
        assert_eq!(status, StatusCode::OK, "body: {body}");
        (serde_json::from_str(&body).unwrap(), set)
    }

    /// A session with counter 3; returns its cookie.
    async fn session_at_three(&self) -> String {
        let (_, c) = self.seen("/count", None).await;
        let (_, c) = self.seen("/count", c.as_deref()).await;
        let (s, c) = self.seen("/count", c.as_deref()).await;
        assert_eq!(s.counter, 3);
        c.unwrap()
    }

    /// Asserts `cookie` is refused: 200, a fresh session (counter 1).
    async fn assert_fresh(&self, cookie: &str, what: &str) {
        self.assert_fresh_as(&self.name.clone(), cookie, what).await
    }

    async fn assert_fresh_as(&self, name: &str, cookie: &str, what: &str) {
        let (status, _, body) = self.get_as("/count", name, Some(cookie)).await;
        assert_eq!(status, StatusCode::OK, "{what}: {body}");
        let s: Seen = serde_json::from_str(&body).unwrap();
        assert!(
            s.new && s.counter == 1,
            "{what}: tampered cookie was accepted"
        );
    }
}

fn key_id_of(cookie: &str) -> u16 {
    let bytes = URL_SAFE_NO_PAD.decode(cookie).unwrap();
    u16::from_be_bytes([bytes[2], bytes[3]])
}

// ---------------------------------------------------------------- tampering

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flipped_byte_of_a_real_cookie_yields_a_fresh_session() {
    let clock = ManualClock::new();
    let app = App::start(&ring(&[(1, S1)]), config("id", &clock)).await;
    let cookie = app.session_at_three().await;
    // The untouched cookie still works (the assertions below can fail).
    assert_eq!(app.seen("/peek", Some(&cookie)).await.0.counter, 3);

    let raw = URL_SAFE_NO_PAD.decode(&cookie).unwrap();
    for i in 0..raw.len() {
        for mask in [0x01u8, 0x80] {
            let mut t = raw.clone();
            t[i] ^= mask;
            app.assert_fresh(
                &URL_SAFE_NO_PAD.encode(&t),
                &format!("byte {i} ^ {mask:#x}"),
            )
            .await;
        }
    }
    // And every character of the text form, replaced by another base64url one.
    for (i, c) in cookie.char_indices() {
        let other = if c == 'A' { 'B' } else { 'A' };
        let t = format!("{}{other}{}", &cookie[..i], &cookie[i + 1..]);
        app.assert_fresh(&t, &format!("char {i}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_truncated_at_every_length_yields_a_fresh_session() {
    let clock = ManualClock::new();
    let app = App::start(&ring(&[(1, S1)]), config("id", &clock)).await;
    let cookie = app.session_at_three().await;
    for len in 0..cookie.len() {
        app.assert_fresh(&cookie[..len], &format!("truncated to {len}"))
            .await;
    }
    // Extended, too.
    app.assert_fresh(&format!("{cookie}A"), "one extra char")
        .await;
    app.assert_fresh(&format!("{cookie}{cookie}"), "doubled")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_moved_to_another_cookie_name_does_not_open() {
    let clock = ManualClock::new();
    let keys = ring(&[(1, S1)]);
    let app = App::start(&keys, config("id", &clock)).await;
    let other = App::start(&keys, config("other", &clock)).await;
    let cookie = app.session_at_three().await;
    other.assert_fresh(&cookie, "moved from id to other").await;
    // The same value under its own name still opens.
    assert_eq!(app.seen("/peek", Some(&cookie)).await.0.counter, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_sealed_under_a_foreign_key_or_purpose_does_not_open() {
    let clock = ManualClock::new();
    let keys = ring(&[(1, S1)]);
    let cfg = config("id", &clock);
    let app = App::start(&keys, cfg.clone()).await;
    let mut record = Record::new(
        SessionId::generate(),
        Data {
            counter: 41,
            blob: String::new(),
        },
        clock.now(),
        &ExpiryPolicy::default(),
    );
    record.version = 1;
    // Same key id, another secret.
    let foreign = CookieStore::<Data>::new(&ring(&[(1, S2)]), &cfg);
    app.assert_fresh(&foreign.seal(&record).unwrap(), "foreign secret, same id")
        .await;
    // A key id the ring does not hold.
    let unknown = CookieStore::<Data>::new(&ring(&[(99, S2)]), &cfg);
    app.assert_fresh(&unknown.seal(&record).unwrap(), "unknown key id")
        .await;
    // The right ring, but sealed for server-side store data.
    let store_data = Codec::builder()
        .seal(&keys, KeyPurpose::StoreData)
        .context("id")
        .build();
    let v = URL_SAFE_NO_PAD.encode(store_data.encode(&record).unwrap());
    app.assert_fresh(&v, "sealed for another purpose").await;
    // Control: the genuine store's seal of the same record opens.
    let genuine = CookieStore::<Data>::new(&keys, &cfg);
    let (s, _) = app
        .seen("/peek", Some(&genuine.seal(&record).unwrap()))
        .await;
    assert_eq!((s.counter, s.new), (41, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_malformed_and_empty_values_yield_a_fresh_session() {
    let clock = ManualClock::new();
    let app = App::start(&ring(&[(1, S1)]), config("id", &clock)).await;
    let hundred_kb = "A".repeat(100 * 1024);
    let valid_but_huge = URL_SAFE_NO_PAD.encode(vec![1u8; 5000]);
    for (v, what) in [
        (hundred_kb.as_str(), "100 KB cookie"),
        (valid_but_huge.as_str(), "5000 bytes of valid base64url"),
        ("", "empty value"),
        ("!!!!", "not base64"),
        ("AAAA====", "padded base64"),
        ("AQID+/8=", "standard, not url-safe, base64"),
        ("\"AQID\"", "quoted"),
        ("AB", "two characters"),
        ("A", "one character"),
    ] {
        app.assert_fresh(v, what).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_cookie_replayed_after_its_deadlines_does_not_open() {
    let clock = ManualClock::new();
    let expired = Arc::new(AtomicUsize::new(0));
    let e = expired.clone();
    let cfg = Config::builder()
        .cookie_name("id")
        .idle_timeout(Duration::from_secs(30 * 60))
        .absolute_lifetime(Duration::from_secs(60 * 60))
        .clock(clock.clone())
        .on_expired(move |_| {
            e.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let app = App::start(&ring(&[(1, S1)]), cfg).await;
    let (_, c0) = app.seen("/count", None).await;
    let c0 = c0.unwrap();

    // 20 minutes on: less than half the idle window left, so a read re-seals.
    clock.advance(Duration::from_secs(20 * 60));
    let (s, c1) = app.seen("/peek", Some(&c0)).await;
    assert_eq!((s.counter, s.new), (1, false));
    let c1 = c1.expect("the sliding touch re-seals the cookie");

    // 40 minutes: the copy taken at 0 is past its idle deadline; c1 is not.
    clock.advance(Duration::from_secs(20 * 60));
    app.assert_fresh(&c0, "replay after the idle deadline")
        .await;
    let (s, c2) = app.seen("/peek", Some(&c1)).await;
    assert!(!s.new);
    let c2 = c2.unwrap();

    // 60 minutes: past the absolute deadline, however active the session was.
    clock.advance(Duration::from_secs(20 * 60));
    app.assert_fresh(&c2, "replay after the absolute deadline")
        .await;
    assert_eq!(expired.load(Ordering::SeqCst), 2, "on_expired fires");
}

// ---------------------------------------------------------------- behaviour

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_expiration_reseals_only_in_the_second_half_of_the_idle_window() {
    let clock = ManualClock::new();
    let app = App::start(&ring(&[(1, S1)]), config("id", &clock)).await;
    let (_, c) = app.seen("/count", None).await;
    let c = c.unwrap();
    clock.advance(Duration::from_secs(10 * 60)); // 20 min left of 30
    let (s, set) = app.seen("/peek", Some(&c)).await;
    assert!(!s.new);
    assert!(
        set.is_none(),
        "a read in the first half sends no Set-Cookie"
    );
    clock.advance(Duration::from_secs(6 * 60)); // 14 min left < 15
    let (_, set) = app.seen("/peek", Some(&c)).await;
    let resealed = set.expect("a read in the second half re-seals");
    assert_ne!(resealed, c);
    // The re-sealed cookie carries the moved idle deadline: alive at 16 + 29 min.
    clock.advance(Duration::from_secs(29 * 60));
    assert!(!app.seen("/peek", Some(&resealed)).await.0.new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_over_the_cookie_limit_is_an_error_response_not_a_lost_cookie() {
    let clock = ManualClock::new();
    let keys = ring(&[(1, S1)]);
    let app = App::start(&keys, config("id", &clock)).await;
    let cookie = app.session_at_three().await;
    let (status, set, body) = app.get("/big", Some(&cookie)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(set.is_none(), "no cookie the browser would drop");
    // The browser's cookie is untouched and still works.
    assert_eq!(app.seen("/peek", Some(&cookie)).await.0.counter, 3);

    // An application can answer it its own way.
    struct TooLarge;
    impl ErrorResponder for TooLarge {
        fn respond(&self, e: &StoreError) -> ErrorResponse {
            match e {
                StoreError::CookieTooLarge { size, limit } => ErrorResponse::text(
                    http::StatusCode::PAYLOAD_TOO_LARGE,
                    format!("session {size} > {limit}"),
                ),
                other => DefaultErrorResponder.respond(other),
            }
        }
    }
    let custom = App::start_with(&keys, config("id", &clock), Some(TooLarge)).await;
    let (status, _, body) = custom.get("/big", Some(&cookie)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.ends_with("> 4096"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_opens_old_cookies_reseals_them_on_write_and_retires_removed_keys() {
    let clock = ManualClock::new();
    let old = App::start(&ring(&[(1, S1)]), config("id", &clock)).await;
    let c1 = old.session_at_three().await;
    assert_eq!(key_id_of(&c1), 1);

    // Deploy key 2 as current, key 1 as previous.
    let rotated = App::start(&ring(&[(2, S2), (1, S1)]), config("id", &clock)).await;
    let (s, set) = rotated.seen("/peek", Some(&c1)).await;
    assert_eq!((s.counter, s.new), (3, false), "the old cookie opens");
    assert!(set.is_none(), "a read alone does not rewrite the cookie");
    let (s, set) = rotated.seen("/count", Some(&c1)).await;
    assert_eq!(s.counter, 4);
    let c2 = set.expect("a write re-seals");
    assert_eq!(key_id_of(&c2), 2, "re-sealed under the current key");

    // Key 1 removed from the ring: its cookies no longer open, key 2's do.
    let retired = App::start(&ring(&[(2, S2)]), config("id", &clock)).await;
    retired.assert_fresh(&c1, "cookie of a removed key").await;
    assert_eq!(retired.seen("/peek", Some(&c2)).await.0.counter, 4);
}

/// A read-only request that loads a session in its last minute and ends
/// after the deadline the session had: the activity was recorded at the
/// load, so the response carries a refreshed cookie and the user stays
/// logged in. (Decided at the commit, the touch found the deadline passed
/// and nothing was sent: the next request found the session expired.)
#[tokio::test]
async fn a_slow_read_near_the_idle_deadline_still_refreshes_the_cookie() {
    let clock = ManualClock::new();
    let config = Config::builder()
        .idle_timeout(Duration::from_secs(600))
        .clock(clock.clone())
        .build()
        .unwrap();
    let ring = KeyRing::builder().current(1, S1).build().unwrap();
    let sessions = Sessions::new(CookieStore::<Data>::new(&ring, &config), config);
    let cookie = first_cookie(&sessions, |d| d.counter = 7).await;
    clock.advance(Duration::from_secs(599));
    let slow = sessions.load(Some(&cookie)).await.unwrap();
    assert_eq!(slow.data().counter, 7, "alive when loaded");
    clock.advance(Duration::from_secs(30));
    let action = sessions.commit(&slow, Some(&cookie)).await.unwrap();
    let refreshed = action.value().expect("a refreshed cookie").to_owned();
    let next = sessions.load(Some(&refreshed)).await.unwrap();
    assert!(!next.is_new(), "still logged in");
    assert_eq!(next.data().counter, 7);
}

/// With the opened cache on, a value this process just sealed loads exactly
/// as opening it does elsewhere: a field the session type does not
/// serialize is gone, not served from the record the handler left behind.
#[tokio::test]
async fn the_opened_cache_serves_what_opening_gives_never_the_unsaved_record() {
    #[derive(Serialize, Deserialize, Default, Clone)]
    struct Scratchy {
        n: u32,
        #[serde(skip)]
        scratch: Option<String>,
    }
    let config = Config::default();
    let ring = KeyRing::builder().current(1, S1).build().unwrap();
    let cached = CookieStore::<Scratchy>::builder(&ring, &config)
        .opened_cache(64)
        .build();
    let sessions = Sessions::new(cached, config.clone());
    let other = Sessions::new(CookieStore::<Scratchy>::new(&ring, &config), config);
    let cookie = first_cookie(&sessions, |d| d.n = 1).await;
    let s = sessions.load(Some(&cookie)).await.unwrap();
    {
        let mut d = s.data_mut();
        d.n = 2;
        d.scratch = Some("not saved".into());
    }
    let action = sessions.commit(&s, Some(&cookie)).await.unwrap();
    let updated = action.value().expect("a new cookie").to_owned();
    for (name, node) in [("this process", &sessions), ("another", &other)] {
        let again = node.load(Some(&updated)).await.unwrap();
        assert_eq!(again.data().n, 2, "{name}");
        assert!(
            again.data().scratch.is_none(),
            "{name} served the unsaved field"
        );
    }
}
