//! One HTTP behaviour suite, two servers: every case below runs against the
//! tower layer (in an axum app) and against the actix-web middleware, each
//! listening on an ephemeral port, through a real reqwest client that handles
//! the session cookie by hand (so the test sees every `Set-Cookie`).
//!
//! The application is written once ([`routes`]); each framework only wires
//! its handlers to those functions. The cases are written once too, as
//! functions of a [`Framework`]; [`both_frameworks!`] instantiates each case
//! for both.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sessionkit::store::memory::MemoryStore;
use sessionkit::store::{RemovalListener, Save, SaveOutcome};
use sessionkit::{Config, ManualClock, Record, SessionId, Sessions, Store, StoreError};

/// The session data of the test app.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Data {
    counter: u64,
    user: Option<String>,
}

/// What each route does with the session, written once for both frameworks.
mod routes {
    use super::Data;
    use sessionkit::Session;

    pub fn read(s: &Session<Data>) -> String {
        let d = s.data();
        format!(
            "counter={} user={}",
            d.counter,
            d.user.as_deref().unwrap_or("-")
        )
    }

    pub fn increment(s: &Session<Data>) -> String {
        let mut d = s.data_mut();
        d.counter += 1;
        format!("counter={}", d.counter)
    }

    pub fn login(s: &Session<Data>, user: String) -> String {
        s.regenerate_id();
        s.set_owner(Some(user.clone()));
        s.flash().set("notice", format!("welcome {user}"));
        s.data_mut().user = Some(user);
        "logged in".into()
    }

    /// What the failing middleware of the actix-web app's `/guarded` routes says.
    pub const REFUSED: &str = "refused after the handler";

    pub fn logout(s: &Session<Data>) -> String {
        s.destroy();
        "logged out".into()
    }

    pub fn set_flash(s: &Session<Data>) -> String {
        s.flash().set("notice", "saved");
        "flash set".into()
    }

    pub fn read_flash(s: &Session<Data>) -> String {
        let all: Vec<String> = s
            .flash()
            .take_all()
            .into_iter()
            .map(|m| format!("{}={}", m.key, m.value))
            .collect();
        format!("flash[{}]", all.join(","))
    }

    pub fn maybe(s: Option<&Session<Data>>) -> String {
        s.map_or_else(|| "anonymous".into(), read)
    }

    pub const PLAIN: &str = "no session here";

    /// The caching policy `/counter/cacheable` chooses itself.
    pub const OWN_CACHE_CONTROL: &str = "private, max-age=60";
    /// A policy that would let a shared cache keep the response.
    pub const PUBLIC_CACHE_CONTROL: &str = "public, max-age=60";
}

/// A real [`MemoryStore`] behind a probe that counts the calls the adapters
/// make and can switch the backend off.
///
/// Switching off answers `StoreError::Unavailable` instead of calling the
/// store, the way a store reports a backend it cannot reach. This is the one
/// stand-in of the suite: a store that fails for real needs a network backend
/// (the Redis store), which does not exist yet; once it lands, the failure
/// cases can run against a Redis server the test kills.
#[derive(Clone)]
struct ProbedStore {
    inner: MemoryStore<Data>,
    loads: Arc<AtomicUsize>,
    saves: Arc<AtomicUsize>,
    deletes: Arc<AtomicUsize>,
    loads_fail: Arc<AtomicBool>,
    saves_fail: Arc<AtomicBool>,
    /// Saves answer a cookie value with attributes appended, as a faulty
    /// store of an application's own might.
    saves_inject: Arc<AtomicBool>,
}

impl ProbedStore {
    fn new(clock: &ManualClock) -> Self {
        ProbedStore {
            inner: MemoryStore::<Data>::builder().clock(clock.clone()).build(),
            loads: Arc::default(),
            saves: Arc::default(),
            deletes: Arc::default(),
            loads_fail: Arc::default(),
            saves_fail: Arc::default(),
            saves_inject: Arc::default(),
        }
    }

    /// Every store call so far (loads, saves, deletes).
    fn calls(&self) -> usize {
        [&self.loads, &self.saves, &self.deletes]
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .sum()
    }

    fn saves(&self) -> usize {
        self.saves.load(Ordering::SeqCst)
    }

    fn backend_down() -> StoreError {
        StoreError::Unavailable("backend switched off by the test".into())
    }
}

#[async_trait]
impl Store<Data> for ProbedStore {
    async fn load(&self, cookie_value: &str) -> Result<Option<Record<Data>>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        if self.loads_fail.load(Ordering::SeqCst) {
            return Err(Self::backend_down());
        }
        self.inner.load(cookie_value).await
    }

    async fn save(&self, save: Save<'_, Data>) -> Result<SaveOutcome, StoreError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        if self.saves_fail.load(Ordering::SeqCst) {
            return Err(Self::backend_down());
        }
        let out = self.inner.save(save).await?;
        if self.saves_inject.load(Ordering::SeqCst) {
            if let SaveOutcome::Saved(value) = out {
                return Ok(SaveOutcome::Saved(format!("{value}; Domain=evil.example")));
            }
        }
        Ok(out)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(id).await
    }

    fn on_removed(&self, listener: RemovalListener) {
        self.inner.on_removed(listener)
    }
}

type AppSessions = Sessions<Data, ProbedStore>;

/// The framework under test.
#[derive(Debug, Clone, Copy)]
enum Framework {
    Axum,
    Actix,
}

/// The app of each framework, wiring the routes to [`routes`].
mod apps {
    use super::{routes, AppSessions, Data};
    use sessionkit::Session;

    pub async fn start_axum(sessions: AppSessions) -> String {
        use axum::routing::{get, post};
        use sessionkit::SessionLayer;

        let app = axum::Router::new()
            .route(
                "/counter",
                get(|s: Session<Data>| async move { routes::read(&s) }),
            )
            .route(
                "/counter",
                post(|s: Session<Data>| async move { routes::increment(&s) }),
            )
            .route(
                "/login",
                post(|s: Session<Data>, user: String| async move { routes::login(&s, user) }),
            )
            .route(
                "/logout",
                post(|s: Session<Data>| async move { routes::logout(&s) }),
            )
            .route(
                "/flash",
                post(|s: Session<Data>| async move { routes::set_flash(&s) }),
            )
            .route(
                "/flash",
                get(|s: Session<Data>| async move { routes::read_flash(&s) }),
            )
            .route(
                "/maybe",
                get(|s: Option<Session<Data>>| async move { routes::maybe(s.as_ref()) }),
            )
            .route("/plain", get(|| async { routes::PLAIN }))
            .route(
                "/counter/cacheable",
                post(|s: Session<Data>| async move {
                    let cache = [(http::header::CACHE_CONTROL, routes::OWN_CACHE_CONTROL)];
                    (cache, routes::increment(&s))
                }),
            )
            .route(
                "/counter/public",
                post(|s: Session<Data>| async move {
                    let cache = [(http::header::CACHE_CONTROL, routes::PUBLIC_CACHE_CONTROL)];
                    (cache, routes::increment(&s))
                }),
            )
            .layer(SessionLayer::new(&sessions))
            // Merged after `.layer`: these routes have no session layer.
            .route(
                "/unwrapped",
                get(|s: Session<Data>| async move { routes::read(&s) }),
            )
            .route(
                "/unwrapped/maybe",
                get(|s: Option<Session<Data>>| async move { routes::maybe(s.as_ref()) }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    /// Stops the actix-web server (and its thread) when the test ends.
    pub struct ActixServer(actix_web::dev::ServerHandle);

    impl Drop for ActixServer {
        fn drop(&mut self) {
            // The stop command is sent by the call itself; awaiting its
            // completion is not needed here.
            drop(self.0.stop(false));
        }
    }

    pub fn start_actix(sessions: AppSessions) -> (String, ActixServer) {
        use actix_web::{web, App, HttpServer};
        use sessionkit::http::actix::{MaybeSession, SessionMiddleware};

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    // The session routes live in a scope with the middleware;
                    // the `/unwrapped` ones outside it have none.
                    let wrapped = web::scope("")
                        .wrap(SessionMiddleware::new(&sessions))
                        .route(
                            "/counter",
                            web::get().to(|s: Session<Data>| async move { routes::read(&s) }),
                        )
                        .route(
                            "/counter",
                            web::post().to(|s: Session<Data>| async move { routes::increment(&s) }),
                        )
                        .route(
                            "/login",
                            web::post().to(|s: Session<Data>, user: String| async move {
                                routes::login(&s, user)
                            }),
                        )
                        .route(
                            "/logout",
                            web::post().to(|s: Session<Data>| async move { routes::logout(&s) }),
                        )
                        .route(
                            "/flash",
                            web::post().to(|s: Session<Data>| async move { routes::set_flash(&s) }),
                        )
                        .route(
                            "/flash",
                            web::get().to(|s: Session<Data>| async move { routes::read_flash(&s) }),
                        )
                        .route(
                            "/maybe",
                            web::get().to(|MaybeSession(s): MaybeSession<Data>| async move {
                                routes::maybe(s.as_ref())
                            }),
                        )
                        .route("/plain", web::get().to(|| async { routes::PLAIN }))
                        // Behind a middleware inside the session middleware
                        // that fails after the handler ran.
                        .service(
                            web::scope("/guarded")
                                .wrap_fn(|req, srv| {
                                    // `/redirect`: an error that hands its
                                    // response out once (a login redirect).
                                    let redirect = req.path().ends_with("/redirect");
                                    let handled = actix_web::dev::Service::call(srv, req);
                                    async move {
                                        handled.await?;
                                        let e = if redirect {
                                            let to_login = actix_web::HttpResponse::Found()
                                                .insert_header(("location", "/login"))
                                                .finish();
                                            actix_web::error::InternalError::from_response(
                                                routes::REFUSED,
                                                to_login,
                                            )
                                            .into()
                                        } else {
                                            actix_web::error::ErrorForbidden(routes::REFUSED)
                                        };
                                        Err::<actix_web::dev::ServiceResponse, _>(e)
                                    }
                                })
                                .route("/redirect", web::get().to(|| async { routes::PLAIN }))
                                .route(
                                    "/redirect",
                                    web::post().to(|s: Session<Data>| async move {
                                        routes::increment(&s)
                                    }),
                                )
                                .route(
                                    "/counter",
                                    web::get()
                                        .to(|s: Session<Data>| async move { routes::read(&s) }),
                                )
                                .route(
                                    "/counter",
                                    web::post().to(|s: Session<Data>| async move {
                                        routes::increment(&s)
                                    }),
                                )
                                .route(
                                    "/login",
                                    web::post().to(|s: Session<Data>, user: String| async move {
                                        routes::login(&s, user)
                                    }),
                                )
                                .route(
                                    "/logout",
                                    web::post()
                                        .to(|s: Session<Data>| async move { routes::logout(&s) }),
                                ),
                        )
                        .route(
                            "/counter/cacheable",
                            web::post().to(|s: Session<Data>| async move {
                                actix_web::HttpResponse::Ok()
                                    .insert_header(("cache-control", routes::OWN_CACHE_CONTROL))
                                    .body(routes::increment(&s))
                            }),
                        )
                        .route(
                            "/counter/public",
                            web::post().to(|s: Session<Data>| async move {
                                actix_web::HttpResponse::Ok()
                                    .insert_header(("cache-control", routes::PUBLIC_CACHE_CONTROL))
                                    .body(routes::increment(&s))
                            }),
                        );
                    App::new()
                        .route(
                            "/unwrapped",
                            web::get().to(|s: Session<Data>| async move { routes::read(&s) }),
                        )
                        .route(
                            "/unwrapped/maybe",
                            web::get().to(|MaybeSession(s): MaybeSession<Data>| async move {
                                routes::maybe(s.as_ref())
                            }),
                        )
                        .service(wrapped)
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .unwrap()
                .run();
                tx.send(server.handle()).unwrap();
                server.await
            })
        });
        let handle = rx.recv().unwrap();
        (format!("http://{addr}"), ActixServer(handle))
    }
}

/// One running server with its store and clock, and a client without a
/// cookie jar: cookies are sent by hand.
struct Server {
    base: String,
    store: ProbedStore,
    clock: ManualClock,
    client: reqwest::Client,
    _actix: Option<apps::ActixServer>,
}

/// What a response carried, as the tests look at it.
#[derive(Debug)]
struct Reply {
    status: u16,
    set_cookies: Vec<String>,
    cache_control: Option<String>,
    vary: Vec<String>,
    retry_after: Option<String>,
    body: String,
}

impl Reply {
    /// The `Set-Cookie` header for the session cookie, if any.
    fn session_set_cookie(&self) -> Option<&str> {
        let mut found = self
            .set_cookies
            .iter()
            .filter(|c| c.starts_with("__Host-id="));
        let first = found.next().map(String::as_str);
        assert!(
            found.next().is_none(),
            "two session Set-Cookie headers: {self:?}"
        );
        first
    }

    /// The value the response set the session cookie to (`None`: not set or removed).
    fn new_cookie(&self) -> Option<String> {
        let header = self.session_set_cookie()?;
        let value = header["__Host-id=".len()..].split(';').next().unwrap_or("");
        (!value.is_empty()).then(|| value.to_owned())
    }
}

impl Server {
    async fn start(framework: Framework) -> Server {
        let clock = ManualClock::new();
        let store = ProbedStore::new(&clock);
        let config = Config::builder().clock(clock.clone()).build().unwrap();
        let sessions = Sessions::new(store.clone(), config);
        let (base, actix) = match framework {
            Framework::Axum => (apps::start_axum(sessions).await, None),
            Framework::Actix => {
                let (base, guard) = apps::start_actix(sessions);
                (base, Some(guard))
            }
        };
        Server {
            base,
            store,
            clock,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            _actix: actix,
        }
    }

    /// Sends a request; `cookie` is the whole `Cookie` header, if any.
    async fn send(&self, method: &str, path: &str, cookie: Option<&str>, body: &str) -> Reply {
        self.send_bytes(method, path, cookie.map(str::as_bytes), body)
            .await
    }

    /// [`Server::send`] with a `Cookie` header of any bytes a client may send.
    async fn send_bytes(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&[u8]>,
        body: &str,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .body(body.to_owned());
        if let Some(c) = cookie {
            let value = reqwest::header::HeaderValue::from_bytes(c).expect("sendable header bytes");
            req = req.header(reqwest::header::COOKIE, value);
        }
        let resp = req.send().await.expect("the server answers");
        let header = |name| {
            resp.headers()
                .get(name)
                .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_owned())
        };
        Reply {
            status: resp.status().as_u16(),
            set_cookies: resp
                .headers()
                .get_all(reqwest::header::SET_COOKIE)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect(),
            cache_control: header(reqwest::header::CACHE_CONTROL),
            vary: resp
                .headers()
                .get_all(reqwest::header::VARY)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect(),
            retry_after: header(reqwest::header::RETRY_AFTER),
            body: resp.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str, session: Option<&str>) -> Reply {
        let cookie = session.map(|v| format!("__Host-id={v}"));
        self.send("GET", path, cookie.as_deref(), "").await
    }

    async fn post(&self, path: &str, session: Option<&str>) -> Reply {
        let cookie = session.map(|v| format!("__Host-id={v}"));
        self.send("POST", path, cookie.as_deref(), "").await
    }

    /// A saved session with `counter=1`; returns its cookie value.
    async fn session_with_one_visit(&self) -> String {
        let r = self.post("/counter", None).await;
        assert_eq!(r.status, 200, "{r:?}");
        r.new_cookie()
            .expect("a changed new session sets the cookie")
    }
}

// ---------------------------------------------------------------- the cases

async fn a_new_session_is_saved_only_when_changed(fw: Framework) {
    let s = Server::start(fw).await;
    let r = s.get("/counter", None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "counter=0 user=-"));
    assert!(
        r.set_cookies.is_empty(),
        "an unchanged new session sets no cookie: {r:?}"
    );
    assert_eq!(
        s.store.calls(),
        0,
        "an unchanged new session touches no store"
    );

    let r = s.post("/counter", None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "counter=1"));
    assert!(r.new_cookie().is_some(), "{r:?}");
    assert_eq!(s.store.saves(), 1);
}

async fn the_session_cookie_carries_the_secure_attributes(fw: Framework) {
    let s = Server::start(fw).await;
    let r = s.post("/counter", None).await;
    let header = r.session_set_cookie().expect("cookie set");
    for part in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(
            header.split("; ").any(|p| p == part),
            "{header} lacks {part}"
        );
    }
    let max_age: u64 = header
        .split("; ")
        .find_map(|p| p.strip_prefix("Max-Age="))
        .expect("Max-Age")
        .parse()
        .unwrap();
    assert!(max_age > 0 && max_age <= 12 * 3600, "Max-Age={max_age}");
    assert_eq!(r.cache_control.as_deref(), Some("no-store"));
}

async fn setting_the_cookie_keeps_a_caching_policy_the_handler_chose(fw: Framework) {
    let s = Server::start(fw).await;
    let r = s.post("/counter/cacheable", None).await;
    assert!(r.new_cookie().is_some(), "{r:?}");
    assert_eq!(r.cache_control.as_deref(), Some(routes::OWN_CACHE_CONTROL));
}

/// A CDN that stored such a response would hand this session to everyone.
async fn a_public_caching_policy_becomes_private_when_the_cookie_is_set(fw: Framework) {
    let s = Server::start(fw).await;
    let r = s.post("/counter/public", None).await;
    let cookie = r.new_cookie().expect("a new session sets its cookie");
    assert_eq!(r.cache_control.as_deref(), Some("max-age=60, private"));
    // Without a cookie to set, the handler's policy stands.
    let r = s.post("/counter/public", Some(&cookie)).await;
    assert!(r.set_cookies.is_empty(), "{r:?}");
    assert_eq!(
        r.cache_control.as_deref(),
        Some(routes::PUBLIC_CACHE_CONTROL)
    );
}

/// A response built from the session says it varies by cookie, so a shared
/// cache never hands one user's page to another: here a logged-in read with
/// a `public` policy and no cookie to set (which keeps its policy).
async fn a_response_that_used_the_session_varies_by_cookie(fw: Framework) {
    let s = Server::start(fw).await;
    let r = s.post("/counter/public", None).await;
    assert_eq!(r.vary, ["Cookie"], "{r:?}");
    let cookie = r.new_cookie().unwrap();
    let r = s.post("/counter/public", Some(&cookie)).await;
    assert!(r.set_cookies.is_empty(), "{r:?}");
    assert_eq!(r.vary, ["Cookie"], "{r:?}");
    let r = s.get("/counter", Some(&cookie)).await;
    assert_eq!(r.vary, ["Cookie"], "{r:?}");
    // A route that never touched the session does not.
    let r = s.get("/plain", Some(&cookie)).await;
    assert!(r.vary.is_empty(), "{r:?}");
}

async fn a_route_that_ignores_the_session_costs_no_store_call_and_no_cookie(fw: Framework) {
    let s = Server::start(fw).await;
    let cookie = s.session_with_one_visit().await;
    let before = s.store.calls();
    let r = s.get("/plain", Some(&cookie)).await;
    assert_eq!((r.status, r.body.as_str()), (200, routes::PLAIN));
    assert!(r.set_cookies.is_empty(), "{r:?}");
    assert_eq!(
        s.store.calls(),
        before,
        "the untouched route called the store"
    );
}

async fn a_read_only_request_sends_no_set_cookie(fw: Framework) {
    let s = Server::start(fw).await;
    let cookie = s.session_with_one_visit().await;
    let saves = s.store.saves();
    let r = s.get("/counter", Some(&cookie)).await;
    assert_eq!((r.status, r.body.as_str()), (200, "counter=1 user=-"));
    assert!(r.set_cookies.is_empty(), "{r:?}");
    assert_eq!(
        s.store.saves(),
        saves,
        "a read-only request saved the session"
    );
}

async fn regenerating_the_id_kills_the_old_cookie(fw: Framework) {
    let s = Server::start(fw).await;
    let old = s.session_with_one_visit().await;
    let r = s
        .send("POST", "/login", Some(&format!("__Host-id={old}")), "alice")
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let new = r.new_cookie().expect("login sets the new id");
    assert_ne!(new, old);

    let r = s.get("/counter", Some(&new)).await;
    assert_eq!(
        r.body, "counter=1 user=alice",
        "the data follows the new id"
    );
    let r = s.get("/counter", Some(&old)).await;
    assert_eq!(r.body, "counter=0 user=-", "the old id still works");
    // A request still carrying the old cookie (one that overlapped the
    // login) must not expire it: the browser's cookie is now the new one,
    // of the same name.
    assert!(r.set_cookies.is_empty(), "{r:?}");
}

async fn destroying_expires_the_cookie_and_kills_the_session(fw: Framework) {
    let s = Server::start(fw).await;
    let cookie = s.session_with_one_visit().await;
    let r = s.post("/logout", Some(&cookie)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let header = r.session_set_cookie().expect("logout expires the cookie");
    assert!(header.starts_with("__Host-id=;"), "{header}");
    for part in ["Max-Age=0", "Path=/"] {
        assert!(
            header.split("; ").any(|p| p == part),
            "{header} lacks {part}"
        );
    }
    assert_eq!(r.new_cookie(), None);
    let r = s.get("/counter", Some(&cookie)).await;
    assert_eq!(
        r.body, "counter=0 user=-",
        "the destroyed session still loads"
    );
}

async fn replaying_a_cookie_after_logout_gives_a_fresh_session(fw: Framework) {
    let s = Server::start(fw).await;
    let cookie = s.session_with_one_visit().await;
    s.post("/logout", Some(&cookie)).await;
    let r = s.post("/counter", Some(&cookie)).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "counter=1"),
        "old data came back"
    );
    let fresh = r
        .new_cookie()
        .expect("the fresh session gets its own cookie");
    assert_ne!(fresh, cookie, "the replayed id was resurrected");
}

async fn a_flash_set_is_read_on_the_next_request_then_consumed(fw: Framework) {
    let s = Server::start(fw).await;
    let r = s.post("/flash", None).await;
    let cookie = r.new_cookie().expect("setting a flash saves the session");
    let r = s.get("/flash", Some(&cookie)).await;
    assert_eq!(r.body, "flash[notice=saved]");
    let r = s.get("/flash", Some(&cookie)).await;
    assert_eq!(r.body, "flash[]", "the flash was not consumed");
}

async fn login_leaves_a_flash_for_the_next_request(fw: Framework) {
    let s = Server::start(fw).await;
    let r = s.send("POST", "/login", None, "bob").await;
    let cookie = r.new_cookie().expect("login saves");
    let r = s.get("/flash", Some(&cookie)).await;
    assert_eq!(r.body, "flash[notice=welcome bob]");
}

async fn hostile_cookie_values_give_a_fresh_session_never_an_error(fw: Framework) {
    let s = Server::start(fw).await;
    let valid = s.session_with_one_visit().await;
    let mut tampered = valid.clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let hostile = [
        tampered,
        format!("{valid}x"),
        "garbage".to_owned(),
        "A".repeat(10 * 1024),
        "abc%0D%0ASet-Cookie:%20id=evil".to_owned(),
        "\"quoted\"".to_owned(),
        "a\tb".to_owned(),
        String::new(),
    ];
    for value in &hostile {
        let r = s.get("/counter", Some(value)).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "counter=0 user=-"),
            "cookie of {} bytes",
            value.len()
        );
        let r = s.post("/counter", Some(value)).await;
        assert_eq!((r.status, r.body.as_str()), (200, "counter=1"));
        let fresh = r.new_cookie().expect("a fresh session gets a cookie");
        assert_ne!(&fresh, value);
        assert!(!r.set_cookies.iter().any(|c| c.contains("evil")), "{r:?}");
    }
}

async fn non_ascii_bytes_in_the_session_cookie_give_a_fresh_session(fw: Framework) {
    let s = Server::start(fw).await;
    let valid = s.session_with_one_visit().await;
    let mut with_valid = format!("__Host-id={valid}").into_bytes();
    with_valid.extend_from_slice(b"\xff\xfe");
    for header in [b"__Host-id=\xff\xfe\x80".to_vec(), with_valid] {
        let r = s.send_bytes("GET", "/counter", Some(&header), "").await;
        assert_eq!((r.status, r.body.as_str()), (200, "counter=0 user=-"));
        let r = s.send_bytes("POST", "/counter", Some(&header), "").await;
        assert_eq!((r.status, r.body.as_str()), (200, "counter=1"));
        assert_ne!(r.new_cookie().expect("fresh cookie"), valid);
    }
    // Another application's malformed cookie does not cost the user theirs.
    let mut beside = format!("__Host-id={valid}; x=").into_bytes();
    beside.extend_from_slice(b"\xff\xfe");
    let r = s.send_bytes("GET", "/counter", Some(&beside), "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "counter=1 user=-"));
}

async fn two_session_cookies_in_one_request_count_as_no_session(fw: Framework) {
    let s = Server::start(fw).await;
    let valid = s.session_with_one_visit().await;
    let calls = s.store.calls();
    for header in [
        format!("__Host-id={valid}; __Host-id=planted"),
        format!("__Host-id=planted; __Host-id={valid}"),
    ] {
        let r = s.send("GET", "/counter", Some(&header), "").await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "counter=0 user=-"),
            "{header}"
        );
    }
    assert_eq!(
        s.store.calls(),
        calls,
        "an ambiguous cookie reached the store"
    );
}

async fn an_expired_session_gives_a_fresh_session(fw: Framework) {
    let s = Server::start(fw).await;
    let cookie = s.session_with_one_visit().await;
    s.clock.advance(Duration::from_secs(13 * 3600));
    let r = s.get("/counter", Some(&cookie)).await;
    assert_eq!((r.status, r.body.as_str()), (200, "counter=0 user=-"));
    let r = s.post("/counter", Some(&cookie)).await;
    assert_eq!(r.body, "counter=1");
    assert_ne!(r.new_cookie().expect("fresh cookie"), cookie);
}

async fn a_failing_store_answers_503_with_a_body_and_keeps_the_cookie(fw: Framework) {
    let s = Server::start(fw).await;
    let cookie = s.session_with_one_visit().await;
    s.store.loads_fail.store(true, Ordering::SeqCst);
    let r = s.get("/counter", Some(&cookie)).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(!r.body.trim().is_empty(), "the 503 has no body");
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    assert!(
        r.set_cookies.is_empty(),
        "the client's cookie was overwritten: {r:?}"
    );

    s.store.loads_fail.store(false, Ordering::SeqCst);
    let r = s.get("/counter", Some(&cookie)).await;
    assert_eq!(
        r.body, "counter=1 user=-",
        "the session did not survive the outage"
    );
}

async fn an_optional_session_lets_the_handler_run_when_the_store_fails(fw: Framework) {
    let s = Server::start(fw).await;
    let cookie = s.session_with_one_visit().await;
    let r = s.get("/maybe", Some(&cookie)).await;
    assert_eq!(r.body, "counter=1 user=-");
    s.store.loads_fail.store(true, Ordering::SeqCst);
    let r = s.get("/maybe", Some(&cookie)).await;
    assert_eq!((r.status, r.body.as_str()), (200, "anonymous"));
    assert!(r.set_cookies.is_empty(), "{r:?}");
}

async fn a_failing_save_replaces_the_response_and_sets_no_cookie(fw: Framework) {
    let s = Server::start(fw).await;
    let cookie = s.session_with_one_visit().await;
    s.store.saves_fail.store(true, Ordering::SeqCst);
    for session in [Some(cookie.as_str()), None] {
        let r = s.post("/counter", session).await;
        assert_eq!(r.status, 503, "{r:?}");
        assert!(
            !r.body.contains("counter="),
            "the handler's body leaked: {r:?}"
        );
        assert!(r.set_cookies.is_empty(), "{r:?}");
        assert_eq!(r.cache_control.as_deref(), Some("no-store"));
    }
    s.store.saves_fail.store(false, Ordering::SeqCst);
    let r = s.get("/counter", Some(&cookie)).await;
    assert_eq!(
        r.body, "counter=1 user=-",
        "a failed save changed the session"
    );
}

/// A store answering a cookie value a cookie cannot carry (here with an
/// attribute appended) gets an error response, never a `Set-Cookie` that
/// would carry the store's attributes to the browser.
async fn a_store_answering_an_unsafe_cookie_value_gets_an_error_not_a_cookie(fw: Framework) {
    let s = Server::start(fw).await;
    s.store.saves_inject.store(true, Ordering::SeqCst);
    let r = s.post("/counter", None).await;
    assert!(r.status >= 500, "{r:?}");
    assert!(r.set_cookies.is_empty(), "{r:?}");
    assert!(
        !r.body.contains("counter="),
        "the handler's body leaked: {r:?}"
    );
}

async fn a_route_without_the_middleware_answers_500_naming_the_misconfiguration(fw: Framework) {
    let s = Server::start(fw).await;
    let cookie = s.session_with_one_visit().await;
    for path in ["/unwrapped", "/unwrapped/maybe"] {
        let r = s.get(path, Some(&cookie)).await;
        assert_eq!(r.status, 500, "{path}: {r:?}");
        assert!(r.body.contains("Session layer missing"), "{path}: {r:?}");
        assert!(r.set_cookies.is_empty(), "{path}: {r:?}");
    }
}

/// actix-web only: a middleware inside `SessionMiddleware` that returns
/// `Err` (a plain axum `Router` cannot fail that way).
async fn an_inner_middleware_error_still_commits_and_sends_the_cookie(fw: Framework) {
    let s = Server::start(fw).await;
    let r = s.post("/guarded/counter", None).await;
    assert_eq!((r.status, r.body.as_str()), (403, routes::REFUSED), "{r:?}");
    let cookie = r
        .new_cookie()
        .expect("the new session's cookie rides on the error response");
    assert_eq!(
        s.get("/counter", Some(&cookie)).await.body,
        "counter=1 user=-"
    );
    let r = s
        .send(
            "POST",
            "/guarded/login",
            Some(&format!("__Host-id={cookie}")),
            "alice",
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let new = r.new_cookie().expect("the regenerated id");
    assert_ne!(new, cookie);
    assert_eq!(
        s.get("/counter", Some(&new)).await.body,
        "counter=1 user=alice"
    );
    assert_eq!(
        s.get("/counter", Some(&cookie)).await.body,
        "counter=0 user=-"
    );
    // Nothing to send: the middleware's error passes on untouched (not
    // rendered into another error type just for `Vary: Cookie`).
    let r = s.get("/guarded/counter", Some(&new)).await;
    assert_eq!((r.status, r.body.as_str()), (403, routes::REFUSED), "{r:?}");
    assert!(r.set_cookies.is_empty(), "{r:?}");
    assert!(r.vary.is_empty(), "{r:?}");
    let r = s.post("/guarded/logout", Some(&new)).await;
    assert_eq!(r.status, 403, "{r:?}");
    let header = r
        .session_set_cookie()
        .expect("the logout expires the cookie");
    assert!(header.starts_with("__Host-id=;"), "{header}");
    assert_eq!(s.get("/counter", Some(&new)).await.body, "counter=0 user=-");
    // An error that hands out its response once (a redirect to a login
    // page): passed on untouched when the session has nothing to send...
    let r = s.get("/guarded/redirect", None).await;
    assert_eq!(r.status, 302, "{r:?}");
    assert!(r.set_cookies.is_empty(), "{r:?}");
    // ...and its own response, with the cookie, when it has.
    let r = s.post("/guarded/redirect", None).await;
    assert_eq!(r.status, 302, "{r:?}");
    let cookie = r.new_cookie().expect("the cookie rides on the redirect");
    assert_eq!(
        s.get("/counter", Some(&cookie)).await.body,
        "counter=1 user=-"
    );
}

/// Runs every case once per framework: `axum_layer::case` and `actix_middleware::case`.
macro_rules! both_frameworks {
    ($($case:ident),* $(,)?) => {
        for_framework!(axum_layer, Axum, $($case),*);
        for_framework!(actix_middleware, Actix, $($case),*);
    };
}

macro_rules! for_framework {
    ($module:ident, $framework:ident, $($case:ident),*) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Framework::$framework).await
                }
            )*
        }
    };
}

both_frameworks!(
    a_new_session_is_saved_only_when_changed,
    the_session_cookie_carries_the_secure_attributes,
    a_route_that_ignores_the_session_costs_no_store_call_and_no_cookie,
    a_read_only_request_sends_no_set_cookie,
    regenerating_the_id_kills_the_old_cookie,
    destroying_expires_the_cookie_and_kills_the_session,
    replaying_a_cookie_after_logout_gives_a_fresh_session,
    a_flash_set_is_read_on_the_next_request_then_consumed,
    login_leaves_a_flash_for_the_next_request,
    hostile_cookie_values_give_a_fresh_session_never_an_error,
    two_session_cookies_in_one_request_count_as_no_session,
    an_expired_session_gives_a_fresh_session,
    a_failing_store_answers_503_with_a_body_and_keeps_the_cookie,
    an_optional_session_lets_the_handler_run_when_the_store_fails,
    a_failing_save_replaces_the_response_and_sets_no_cookie,
    a_store_answering_an_unsafe_cookie_value_gets_an_error_not_a_cookie,
    a_route_without_the_middleware_answers_500_naming_the_misconfiguration,
    setting_the_cookie_keeps_a_caching_policy_the_handler_chose,
    a_public_caching_policy_becomes_private_when_the_cookie_is_set,
    a_response_that_used_the_session_varies_by_cookie,
    non_ascii_bytes_in_the_session_cookie_give_a_fresh_session,
);

for_framework!(
    actix_only,
    Actix,
    an_inner_middleware_error_still_commits_and_sends_the_cookie
);
