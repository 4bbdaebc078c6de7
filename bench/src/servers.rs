//! The servers under test: one per variant, all exposing the same routes.
//!
//! - `GET /read`: the session exists; reads the counter and the username and
//!   returns them (`"<counter> <username>"`), changing nothing.
//! - `GET /write`: increments the counter and saves; returns the new counter.
//! - `GET /new` (sent without a cookie): creates a session with counter = 1
//!   and username `bench-user`; returns `"1"`.
//!
//! The ceilings (`none-axum`, `none-actix`) have no session layer and answer
//! constants. The floors (`floor-axum`, `floor-actix`) are the least a session
//! layer of this shape costs: a per-request value handed to the handler
//! through the request's extensions and the session variants' response
//! bodies, nothing parsed, looked up or stored. Each session variant is compared with the ceiling of its own
//! framework, so framework overhead does not count for or against a library.
//!
//! Every variant runs on a single worker: the driver pins the process to one
//! core. axum variants use Tokio's current-thread runtime; actix variants use
//! `HttpServer::workers(1)` (actix's own per-worker single-threaded runtime;
//! [`ACTIX_WORKERS_ENV`] sets another count).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use sessionkit::codec::Algorithm;
use sessionkit::keys::KeyRing;
use sessionkit::store::cluster::{ClusterOptions, ClusteredStore};
use sessionkit::store::cookie::CookieStore;
use sessionkit::store::memory::MemoryStore;
use sessionkit::store::redis::RedisStore;

/// The session data every variant stores: an integer counter and a short username.
#[derive(Serialize, Deserialize, Default, Clone, Debug)]
pub struct BenchData {
    pub counter: u64,
    pub username: String,
}

const USERNAME: &str = "bench-user";
/// The key peers store [`BenchData`] under (they keep untyped maps).
const KEY: &str = "data";

/// The data of a new session (counter 1, the bench user).
pub fn fresh() -> BenchData {
    BenchData {
        counter: 1,
        username: USERNAME.to_owned(),
    }
}

/// Whether a handler found the session its request named: every session the
/// driver makes carries [`USERNAME`], and a lost one reads as the default
/// (empty). `/read` and `/write` answer 500 when it is lost, which wrk counts
/// as an error, so a variant that loses sessions under load cannot pass for
/// a fast one. Every session variant pays the check, and the floors too (the
/// ceilings answer constants). sessionkit's `/write` checks under the guard
/// of `data_mut`, as an application would write it: a 500 there still saves
/// the fresh session `data_mut` made (an error path only, and counted).
pub fn found(d: &BenchData) -> bool {
    !d.username.is_empty()
}

/// Which web framework a variant runs on (selects its ceiling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framework {
    Axum,
    Actix,
}

/// One server configuration under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    NoneAxum,
    FloorAxum,
    SessionkitMemory,
    SessionkitRedis,
    SessionkitCookie,
    SessionkitCookieCached,
    SessionkitCookieAes,
    SessionkitCluster,
    TowerSessionsMemory,
    TowerSessionsRedis,
    NoneActix,
    FloorActix,
    SessionkitActixMemory,
    SessionkitActixRedis,
    SessionkitActixRedisPerWorker,
    SessionkitActixCookie,
    SessionkitActixCluster,
    SessionkitActixClusterPerWorker,
    ActixCookie,
    ActixRedis,
}

impl Variant {
    /// Every variant, in the order the driver runs and prints them.
    pub const ALL: &'static [Variant] = &[
        Variant::NoneAxum,
        Variant::FloorAxum,
        Variant::SessionkitMemory,
        Variant::SessionkitRedis,
        Variant::SessionkitCookie,
        Variant::SessionkitCookieCached,
        Variant::SessionkitCookieAes,
        Variant::SessionkitCluster,
        Variant::TowerSessionsMemory,
        Variant::TowerSessionsRedis,
        Variant::NoneActix,
        Variant::FloorActix,
        Variant::SessionkitActixMemory,
        Variant::SessionkitActixRedis,
        Variant::SessionkitActixRedisPerWorker,
        Variant::SessionkitActixCookie,
        Variant::SessionkitActixCluster,
        Variant::SessionkitActixClusterPerWorker,
        Variant::ActixCookie,
        Variant::ActixRedis,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::NoneAxum => "none-axum",
            Variant::FloorAxum => "floor-axum",
            Variant::SessionkitMemory => "sessionkit-memory",
            Variant::SessionkitRedis => "sessionkit-redis",
            Variant::SessionkitCookie => "sessionkit-cookie",
            Variant::SessionkitCookieCached => "sessionkit-cookie-cached",
            Variant::SessionkitCookieAes => "sessionkit-cookie-aes",
            Variant::SessionkitCluster => "sessionkit-cluster",
            Variant::TowerSessionsMemory => "tower-sessions-memory",
            Variant::TowerSessionsRedis => "tower-sessions-redis",
            Variant::NoneActix => "none-actix",
            Variant::FloorActix => "floor-actix",
            Variant::SessionkitActixMemory => "sessionkit-actix-memory",
            Variant::SessionkitActixRedis => "sessionkit-actix-redis",
            Variant::SessionkitActixRedisPerWorker => "sessionkit-actix-redis-per-worker",
            Variant::SessionkitActixCookie => "sessionkit-actix-cookie",
            Variant::SessionkitActixCluster => "sessionkit-actix-cluster",
            Variant::SessionkitActixClusterPerWorker => "sessionkit-actix-cluster-per-worker",
            Variant::ActixCookie => "actix-session-cookie",
            Variant::ActixRedis => "actix-session-redis",
        }
    }

    pub fn parse(name: &str) -> Option<Variant> {
        Variant::ALL.iter().copied().find(|v| v.name() == name)
    }

    pub fn framework(self) -> Framework {
        match self {
            Variant::NoneActix
            | Variant::FloorActix
            | Variant::SessionkitActixMemory
            | Variant::SessionkitActixRedis
            | Variant::SessionkitActixRedisPerWorker
            | Variant::SessionkitActixCookie
            | Variant::SessionkitActixCluster
            | Variant::SessionkitActixClusterPerWorker
            | Variant::ActixCookie
            | Variant::ActixRedis => Framework::Actix,
            _ => Framework::Axum,
        }
    }

    /// The no-session server of the same framework.
    pub fn ceiling(self) -> Variant {
        match self.framework() {
            Framework::Axum => Variant::NoneAxum,
            Framework::Actix => Variant::NoneActix,
        }
    }

    /// The floor of the same framework (a layer that does no session work).
    pub fn floor(self) -> Variant {
        match self.framework() {
            Framework::Axum => Variant::FloorAxum,
            Framework::Actix => Variant::FloorActix,
        }
    }

    pub fn is_ceiling(self) -> bool {
        self == self.ceiling()
    }

    /// Whether the variant keeps sessions (the ceilings and the floor do not:
    /// the driver sends them dummy cookies and cannot check what they keep).
    pub fn keeps_sessions(self) -> bool {
        !self.is_ceiling() && !self.is_floor()
    }

    /// Whether the variant is a floor (a layer that does no session work).
    pub fn is_floor(self) -> bool {
        matches!(self, Variant::FloorAxum | Variant::FloorActix)
    }

    /// Whether the session data travels in the cookie (the server keeps
    /// nothing, so a write cannot be checked against a store).
    pub fn keeps_data_in_cookie(self) -> bool {
        matches!(
            self,
            Variant::SessionkitCookie
                | Variant::SessionkitCookieCached
                | Variant::SessionkitCookieAes
                | Variant::SessionkitActixCookie
                | Variant::ActixCookie
        )
    }

    pub fn uses_redis(self) -> bool {
        matches!(
            self,
            Variant::SessionkitRedis
                | Variant::SessionkitCluster
                | Variant::SessionkitActixRedis
                | Variant::SessionkitActixRedisPerWorker
                | Variant::SessionkitActixCluster
                | Variant::SessionkitActixClusterPerWorker
                | Variant::TowerSessionsRedis
                | Variant::ActixRedis
        )
    }
}

/// Runs the server for `variant` on `127.0.0.1:port` until killed. Prints
/// `ready` on stdout once it accepts connections.
pub fn serve(variant: Variant, port: u16, redis_url: Option<String>) -> std::io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let redis_url = || {
        redis_url
            .clone()
            .ok_or_else(|| std::io::Error::other("this variant needs a Redis URL"))
    };
    match variant.framework() {
        Framework::Axum => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let router = match variant {
                    Variant::NoneAxum => axum_apps::none(),
                    Variant::FloorAxum => axum_apps::floor(),
                    Variant::SessionkitMemory => axum_apps::sessionkit(memory_store()?),
                    Variant::SessionkitRedis => {
                        axum_apps::sessionkit(redis_store(&redis_url()?).await?)
                    }
                    Variant::SessionkitCookie => {
                        axum_apps::sessionkit(cookie_store(Algorithm::default(), 0)?)
                    }
                    Variant::SessionkitCookieCached => axum_apps::sessionkit(cookie_store(
                        Algorithm::default(),
                        COOKIE_CACHE_ENTRIES,
                    )?),
                    Variant::SessionkitCookieAes => {
                        axum_apps::sessionkit(cookie_store(Algorithm::Aes256Gcm, 0)?)
                    }
                    Variant::SessionkitCluster => {
                        axum_apps::sessionkit(cluster_store(&redis_url()?).await?)
                    }
                    Variant::TowerSessionsMemory => axum_apps::tower_sessions_memory(),
                    Variant::TowerSessionsRedis => {
                        axum_apps::tower_sessions_redis(&redis_url()?).await?
                    }
                    _ => unreachable!("not an axum variant"),
                };
                let listener = tokio::net::TcpListener::bind(addr).await?;
                println!("ready");
                axum::serve(listener, router).await
            })
        }
        Framework::Actix => actix_web::rt::System::new().block_on(async move {
            match variant {
                Variant::NoneActix => actix_apps::none(addr).await,
                Variant::FloorActix => actix_apps::floor(addr).await,
                Variant::SessionkitActixMemory => {
                    actix_apps::sessionkit(addr, memory_store()?).await
                }
                Variant::SessionkitActixCookie => {
                    actix_apps::sessionkit(addr, cookie_store(Algorithm::default(), 0)?).await
                }
                Variant::SessionkitActixRedis => {
                    actix_apps::sessionkit(addr, redis_store(&redis_url()?).await?).await
                }
                Variant::SessionkitActixRedisPerWorker => {
                    actix_apps::sessionkit_redis_per_worker(addr, redis_url()?).await
                }
                Variant::SessionkitActixCluster => {
                    actix_apps::sessionkit(addr, cluster_store(&redis_url()?).await?).await
                }
                Variant::SessionkitActixClusterPerWorker => {
                    actix_apps::sessionkit_cluster_per_worker(addr, redis_url()?).await
                }
                Variant::ActixCookie => actix_apps::cookie(addr).await,
                Variant::ActixRedis => actix_apps::redis(addr, &redis_url()?).await,
                _ => unreachable!("not an actix variant"),
            }
        }),
    }
}

/// Entries of the opened-value cache in `sessionkit-cookie-cached`: more
/// than the 1000 sessions the load rotates over.
const COOKIE_CACHE_ENTRIES: usize = 4096;

/// A cookie store under a fresh throw-away secret (sessions do not outlive
/// the process), sealing with `algorithm`, with `cache` entries of
/// opened-value cache (0: none).
fn cookie_store(algorithm: Algorithm, cache: usize) -> std::io::Result<CookieStore<BenchData>> {
    let ring = KeyRing::builder()
        .current(1, KeyRing::generate_secret())
        .build()
        .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    let config = sessionkit::Config::default();
    Ok(CookieStore::builder(&ring, &config)
        .algorithm(algorithm)
        .opened_cache(cache)
        .build())
}

/// One node of a clustered store (Redis plus its local cache), default options.
async fn cluster_store(url: &str) -> std::io::Result<ClusteredStore<BenchData>> {
    ClusteredStore::connect(url, ClusterOptions::new([7u8; 32]))
        .await
        .map_err(std::io::Error::other)
}

/// Sets the memory variants' `max_entries` (default: the library's, 100 000),
/// to measure how the size of the store's working set moves `/new`, where a
/// full store evicts on every insert (see BENCHMARKS.md).
pub const MEMORY_MAX_ENTRIES_ENV: &str = "SESSIONKIT_BENCH_MEMORY_MAX_ENTRIES";

/// The memory store of the memory variants, bounded by [`MEMORY_MAX_ENTRIES_ENV`]
/// if it is set.
fn memory_store() -> std::io::Result<MemoryStore<BenchData>> {
    Ok(match memory_max_entries()? {
        Some(n) => MemoryStore::builder().max_entries(n).build(),
        None => MemoryStore::new(),
    })
}

/// [`MEMORY_MAX_ENTRIES_ENV`], parsed: `None` when it is not set.
pub fn memory_max_entries() -> std::io::Result<Option<usize>> {
    parse_max_entries(std::env::var(MEMORY_MAX_ENTRIES_ENV))
}

fn parse_max_entries(var: Result<String, std::env::VarError>) -> std::io::Result<Option<usize>> {
    parse_positive(MEMORY_MAX_ENTRIES_ENV, var, "sessions")
}

/// Runs every actix-web variant (ceiling and floor included) on N workers
/// instead of one: N runtimes in one server process, all pinned with it to
/// its core, to see how a store behaves when several runtimes use it.
pub const ACTIX_WORKERS_ENV: &str = "SESSIONKIT_BENCH_ACTIX_WORKERS";

/// [`ACTIX_WORKERS_ENV`], parsed (default 1).
fn actix_workers() -> std::io::Result<usize> {
    Ok(parse_positive(
        ACTIX_WORKERS_ENV,
        std::env::var(ACTIX_WORKERS_ENV),
        "workers",
    )?
    .unwrap_or(1))
}

/// A positive whole number from environment variable `name`; `None` when it
/// is not set, a clear error naming it when it is anything else.
fn parse_positive(
    name: &str,
    var: Result<String, std::env::VarError>,
    what: &str,
) -> std::io::Result<Option<usize>> {
    let bad = |v: &dyn std::fmt::Debug| {
        std::io::Error::other(format!(
            "{name}={v:?}: expected a positive whole number of {what}"
        ))
    };
    match var {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(bad(&v)),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(bad(&v)),
        },
    }
}

async fn redis_store(url: &str) -> std::io::Result<RedisStore<BenchData>> {
    RedisStore::connect(url)
        .await
        .map_err(std::io::Error::other)
}

mod axum_apps {
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;

    use super::{found, fresh, BenchData, KEY};

    pub fn none() -> Router {
        Router::new()
            .route("/read", get(|| async { "1 bench-user" }))
            .route("/write", get(|| async { "2" }))
            .route("/new", get(|| async { "1" }))
    }

    /// The least any session layer of this shape costs: a layer that puts a
    /// fresh per-request value (the session data behind an `Arc<Mutex<_>>`)
    /// into the request's extensions, handlers that take it out with the
    /// `Extension` extractor and answer the session variants' bodies. No
    /// cookie is parsed or set and nothing is stored or looked up.
    pub fn floor() -> Router {
        use std::sync::{Arc, Mutex};
        use std::task::{Context, Poll};

        use axum::Extension;

        type Slot = Arc<Mutex<BenchData>>;

        #[derive(Clone)]
        struct FloorLayer;
        impl<S> tower_layer::Layer<S> for FloorLayer {
            type Service = Floor<S>;
            fn layer(&self, inner: S) -> Floor<S> {
                Floor(inner)
            }
        }

        #[derive(Clone)]
        struct Floor<S>(S);
        impl<S, B> tower_service::Service<axum::http::Request<B>> for Floor<S>
        where
            S: tower_service::Service<axum::http::Request<B>>,
        {
            type Response = S::Response;
            type Error = S::Error;
            type Future = S::Future;
            fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
                self.0.poll_ready(cx)
            }
            fn call(&mut self, mut req: axum::http::Request<B>) -> S::Future {
                let slot: Slot = Arc::new(Mutex::new(fresh()));
                req.extensions_mut().insert(slot);
                self.0.call(req)
            }
        }

        // A poisoned lock cannot happen here (no handler panics while
        // holding it); answer 500 rather than unwrap anyway.
        async fn read(Extension(s): Extension<Slot>) -> Result<String, StatusCode> {
            let d = s.lock().map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
            if !found(&d) {
                return Err(StatusCode::INTERNAL_SERVER_ERROR);
            }
            Ok(format!("{} {}", d.counter, d.username))
        }
        async fn write(Extension(s): Extension<Slot>) -> Result<String, StatusCode> {
            let mut d = s.lock().map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
            if !found(&d) {
                return Err(StatusCode::INTERNAL_SERVER_ERROR);
            }
            d.counter += 1;
            Ok(d.counter.to_string())
        }
        async fn new(Extension(s): Extension<Slot>) -> Result<&'static str, StatusCode> {
            *s.lock().map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)? = fresh();
            Ok("1")
        }
        Router::new()
            .route("/read", get(read))
            .route("/write", get(write))
            .route("/new", get(new))
            .layer(FloorLayer)
    }

    pub fn sessionkit(store: impl sessionkit::Store<BenchData>) -> Router {
        use sessionkit::{Config, SessionLayer, Sessions};
        let sessions = Sessions::new(store, Config::default());
        sessionkit_routes().layer(SessionLayer::new(&sessions))
    }

    fn sessionkit_routes() -> Router {
        use sessionkit::Session;
        async fn read(s: Session<BenchData>) -> Result<String, StatusCode> {
            let d = s.data();
            if !found(&d) {
                return Err(StatusCode::INTERNAL_SERVER_ERROR);
            }
            Ok(format!("{} {}", d.counter, d.username))
        }
        async fn write(s: Session<BenchData>) -> Result<String, StatusCode> {
            let mut d = s.data_mut();
            if !found(&d) {
                return Err(StatusCode::INTERNAL_SERVER_ERROR);
            }
            d.counter += 1;
            Ok(d.counter.to_string())
        }
        async fn new(s: Session<BenchData>) -> &'static str {
            s.set_data(fresh());
            "1"
        }
        Router::new()
            .route("/read", get(read))
            .route("/write", get(write))
            .route("/new", get(new))
    }

    fn tower_sessions_routes() -> Router {
        use tower_sessions::Session;
        async fn load(s: &Session) -> BenchData {
            s.get::<BenchData>(KEY)
                .await
                .expect("tower-sessions load")
                .unwrap_or_default()
        }
        async fn read(s: Session) -> Result<String, StatusCode> {
            let d = load(&s).await;
            if !found(&d) {
                return Err(StatusCode::INTERNAL_SERVER_ERROR);
            }
            Ok(format!("{} {}", d.counter, d.username))
        }
        async fn write(s: Session) -> Result<String, StatusCode> {
            let mut d = load(&s).await;
            if !found(&d) {
                return Err(StatusCode::INTERNAL_SERVER_ERROR);
            }
            d.counter += 1;
            s.insert(KEY, &d).await.expect("tower-sessions insert");
            Ok(d.counter.to_string())
        }
        async fn new(s: Session) -> &'static str {
            s.insert(KEY, fresh()).await.expect("tower-sessions insert");
            "1"
        }
        Router::new()
            .route("/read", get(read))
            .route("/write", get(write))
            .route("/new", get(new))
    }

    pub fn tower_sessions_memory() -> Router {
        use tower_sessions::{MemoryStore, SessionManagerLayer};
        tower_sessions_routes().layer(SessionManagerLayer::new(MemoryStore::default()))
    }

    pub async fn tower_sessions_redis(url: &str) -> std::io::Result<Router> {
        use tower_sessions::SessionManagerLayer;
        use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};
        use tower_sessions_redis_store::RedisStore;
        let config = Config::from_url(url).map_err(std::io::Error::other)?;
        // One connection: the server runs on one core.
        let pool = Pool::new(config, None, None, None, 1).map_err(std::io::Error::other)?;
        let _task = pool.connect();
        pool.wait_for_connect()
            .await
            .map_err(std::io::Error::other)?;
        Ok(tower_sessions_routes().layer(SessionManagerLayer::new(RedisStore::new(pool))))
    }
}

mod actix_apps {
    use std::net::SocketAddr;

    use actix_session::storage::{CookieSessionStore, RedisSessionStore, SessionStore};
    use actix_session::{Session, SessionMiddleware};
    use actix_web::cookie::Key;
    use actix_web::http::StatusCode;
    use actix_web::{web, App, HttpResponse, HttpServer};

    use super::{found, fresh, BenchData, KEY};

    fn load(s: &Session) -> BenchData {
        s.get::<BenchData>(KEY)
            .expect("actix-session load")
            .unwrap_or_default()
    }

    /// 500 for a lost session (see [`super::found`]).
    fn lost() -> HttpResponse {
        HttpResponse::new(StatusCode::INTERNAL_SERVER_ERROR)
    }

    async fn read(s: Session) -> HttpResponse {
        let d = load(&s);
        if !found(&d) {
            return lost();
        }
        HttpResponse::Ok().body(format!("{} {}", d.counter, d.username))
    }

    async fn write(s: Session) -> HttpResponse {
        let mut d = load(&s);
        if !found(&d) {
            return lost();
        }
        d.counter += 1;
        s.insert(KEY, &d).expect("actix-session insert");
        HttpResponse::Ok().body(d.counter.to_string())
    }

    async fn new(s: Session) -> &'static str {
        s.insert(KEY, fresh()).expect("actix-session insert");
        "1"
    }

    pub async fn none(addr: SocketAddr) -> std::io::Result<()> {
        let server = HttpServer::new(|| {
            App::new()
                // As the session variants answer: `HttpResponse::body`, no
                // `Content-Type` (a `&'static str` would add one, which the
                // variants' `/read` and `/write` do not send: a ceiling
                // doing more work flattered every actix-web fraction).
                .route(
                    "/read",
                    web::get().to(|| async { HttpResponse::Ok().body("1 bench-user") }),
                )
                .route(
                    "/write",
                    web::get().to(|| async { HttpResponse::Ok().body("2") }),
                )
                .route("/new", web::get().to(|| async { "1" }))
        })
        .workers(super::actix_workers()?)
        .bind(addr)?
        .run();
        println!("ready");
        server.await
    }

    /// The actix-web twin of `floor-axum`: a middleware that puts a fresh
    /// per-request value (the session data behind an `Arc<Mutex<_>>`) into
    /// the request's extensions and returns the inner service's future
    /// unchanged (nothing to do after the handler, so nothing boxed),
    /// handlers that take it with `ReqData` and answer the session variants'
    /// bodies. No cookie is parsed or set and nothing is stored or looked up.
    pub async fn floor(addr: SocketAddr) -> std::io::Result<()> {
        use std::future::{ready, Ready};
        use std::sync::{Arc, Mutex};

        use actix_web::dev::{Service, ServiceRequest, Transform};
        use actix_web::HttpMessage;

        type Slot = Arc<Mutex<BenchData>>;

        struct FloorMiddleware;
        impl<S, B> Transform<S, ServiceRequest> for FloorMiddleware
        where
            S: Service<ServiceRequest, Response = actix_web::dev::ServiceResponse<B>>,
        {
            type Response = S::Response;
            type Error = S::Error;
            type Transform = Floor<S>;
            type InitError = ();
            type Future = Ready<Result<Floor<S>, ()>>;
            fn new_transform(&self, service: S) -> Self::Future {
                ready(Ok(Floor { inner: service }))
            }
        }

        struct Floor<S> {
            inner: S,
        }
        impl<S, B> Service<ServiceRequest> for Floor<S>
        where
            S: Service<ServiceRequest, Response = actix_web::dev::ServiceResponse<B>>,
        {
            type Response = S::Response;
            type Error = S::Error;
            type Future = S::Future;
            actix_web::dev::forward_ready!(inner);
            fn call(&self, req: ServiceRequest) -> S::Future {
                let slot: Slot = Arc::new(Mutex::new(fresh()));
                req.extensions_mut().insert(slot);
                self.inner.call(req)
            }
        }

        // A poisoned lock cannot happen here (no handler panics while
        // holding it); answer 500 rather than unwrap anyway. Also the answer
        // to a lost slot (see `super::found`), which cannot happen either.
        fn poisoned() -> HttpResponse {
            HttpResponse::new(StatusCode::INTERNAL_SERVER_ERROR)
        }
        async fn read(s: web::ReqData<Slot>) -> HttpResponse {
            match s.lock() {
                Ok(d) if found(&d) => {
                    HttpResponse::Ok().body(format!("{} {}", d.counter, d.username))
                }
                _ => poisoned(),
            }
        }
        async fn write(s: web::ReqData<Slot>) -> HttpResponse {
            match s.lock() {
                Ok(mut d) if found(&d) => {
                    d.counter += 1;
                    HttpResponse::Ok().body(d.counter.to_string())
                }
                _ => poisoned(),
            }
        }
        async fn new(s: web::ReqData<Slot>) -> HttpResponse {
            match s.lock() {
                Ok(mut d) => {
                    *d = fresh();
                    HttpResponse::Ok().body("1")
                }
                Err(_) => poisoned(),
            }
        }

        let server = HttpServer::new(|| {
            App::new()
                .wrap(FloorMiddleware)
                .route("/read", web::get().to(read))
                .route("/write", web::get().to(write))
                .route("/new", web::get().to(new))
        })
        .workers(super::actix_workers()?)
        .bind(addr)?
        .run();
        println!("ready");
        server.await
    }

    /// `store` makes the store for each worker (there is one).
    async fn with_store<S, F>(addr: SocketAddr, store: F) -> std::io::Result<()>
    where
        S: SessionStore + 'static,
        F: Fn() -> S + Clone + Send + 'static,
    {
        let key = Key::generate();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(SessionMiddleware::new(store(), key.clone()))
                .route("/read", web::get().to(read))
                .route("/write", web::get().to(write))
                .route("/new", web::get().to(new))
        })
        .workers(super::actix_workers()?)
        .bind(addr)?
        .run();
        println!("ready");
        server.await
    }

    async fn sk_read(s: sessionkit::Session<BenchData>) -> HttpResponse {
        let d = s.data();
        if !found(&d) {
            return lost();
        }
        HttpResponse::Ok().body(format!("{} {}", d.counter, d.username))
    }

    async fn sk_write(s: sessionkit::Session<BenchData>) -> HttpResponse {
        let mut d = s.data_mut();
        if !found(&d) {
            return lost();
        }
        d.counter += 1;
        HttpResponse::Ok().body(d.counter.to_string())
    }

    async fn sk_new(s: sessionkit::Session<BenchData>) -> &'static str {
        s.set_data(fresh());
        "1"
    }

    fn sk_routes(cfg: &mut web::ServiceConfig) {
        cfg.route("/read", web::get().to(sk_read))
            .route("/write", web::get().to(sk_write))
            .route("/new", web::get().to(sk_new));
    }

    /// sessionkit's own actix-web middleware, for a same-framework comparison.
    pub async fn sessionkit<S: sessionkit::Store<BenchData>>(
        addr: SocketAddr,
        store: S,
    ) -> std::io::Result<()> {
        let sessions = sessionkit::Sessions::new(store, sessionkit::Config::default());
        serve_sessionkit(addr, move || sessions.clone()).await
    }

    /// As [`sessionkit()`] with a `RedisStore`, but the store is built in the
    /// app factory (`build_lazy`), so its connection lives on the worker's
    /// thread. Before a store kept a connection per runtime (4b37010), this
    /// was the only fast layout on actix-web; it stays to show that the
    /// shared store (`sessionkit-actix-redis`) now runs as fast.
    pub async fn sessionkit_redis_per_worker(addr: SocketAddr, url: String) -> std::io::Result<()> {
        use sessionkit::store::redis::RedisStore;
        let build = move || RedisStore::<BenchData>::builder(url.clone()).build_lazy();
        // Fails early, with a clear error, on a URL the factory would reject.
        build().map_err(std::io::Error::other)?;
        serve_sessionkit(addr, move || {
            let store = build().expect("checked before the server started");
            sessionkit::Sessions::new(store, sessionkit::Config::default())
        })
        .await
    }

    /// As [`sessionkit()`] with a `ClusteredStore`, but each worker builds its
    /// own with `ClusteredStore::connect_lazy` in the app factory, so the
    /// store's connection and subscriber run on the worker's thread.
    pub async fn sessionkit_cluster_per_worker(
        addr: SocketAddr,
        url: String,
    ) -> std::io::Result<()> {
        use sessionkit::store::cluster::{ClusterOptions, ClusteredStore};
        let options = ClusterOptions::new([7u8; 32]);
        let build = move || ClusteredStore::<BenchData>::connect_lazy(&url, options.clone());
        // Fails early, with a clear error, on what the factory would reject.
        build().map_err(std::io::Error::other)?;
        serve_sessionkit(addr, move || {
            let store = build().expect("checked before the server started");
            sessionkit::Sessions::new(store, sessionkit::Config::default())
        })
        .await
    }

    /// Workers (one unless `SESSIONKIT_BENCH_ACTIX_WORKERS` says otherwise) whose apps
    /// get their sessions from `sessions` (called once per worker).
    async fn serve_sessionkit<S: sessionkit::Store<BenchData>>(
        addr: SocketAddr,
        sessions: impl Fn() -> sessionkit::Sessions<BenchData, S> + Clone + Send + 'static,
    ) -> std::io::Result<()> {
        use sessionkit::http::actix::SessionMiddleware;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(SessionMiddleware::new(&sessions()))
                .configure(sk_routes)
        })
        .workers(super::actix_workers()?)
        .bind(addr)?
        .run();
        println!("ready");
        server.await
    }

    pub async fn cookie(addr: SocketAddr) -> std::io::Result<()> {
        with_store(addr, CookieSessionStore::default).await
    }

    pub async fn redis(addr: SocketAddr, url: &str) -> std::io::Result<()> {
        let store = RedisSessionStore::new(url)
            .await
            .map_err(std::io::Error::other)?;
        with_store(addr, move || store.clone()).await
    }
}

#[cfg(test)]
mod tests {
    use std::env::VarError;

    use super::{parse_max_entries, parse_positive, serve, Variant, ACTIX_WORKERS_ENV};
    use crate::wire;

    /// A port nothing listens on now.
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port()
    }

    /// The first answer of a server just started on `port` to `GET /new`
    /// (no cookie). Ready once it answers a request: a server that is
    /// listening may still reset connections while its workers start (seen
    /// with actix-web on a loaded machine), so a bare connect is not enough.
    fn wait_for_answer(port: u16, name: &str) -> wire::Reply {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match wire::http_get(port, "/new", None) {
                Ok(reply) => return reply,
                Err(e) => assert!(
                    std::time::Instant::now() < deadline,
                    "{name} never answered: {e}"
                ),
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Both floors answer what the session variants answer, over a real
    /// socket, and set no cookie.
    #[test]
    fn the_floors_answer_the_session_variants_bodies() {
        for (variant, name, ceiling) in [
            (Variant::FloorAxum, "floor-axum", Variant::NoneAxum),
            (Variant::FloorActix, "floor-actix", Variant::NoneActix),
        ] {
            let port = free_port();
            // Runs until the test process exits.
            std::thread::spawn(move || serve(variant, port, None));
            wait_for_answer(port, name);
            for (path, body) in [("/read", "1 bench-user"), ("/write", "2"), ("/new", "1")] {
                let reply = wire::http_get(port, path, Some("id=x")).unwrap();
                assert_eq!(
                    (reply.status, reply.body.trim()),
                    (200, body),
                    "{name} {path}"
                );
                assert!(
                    reply.set_cookie.is_none(),
                    "{name} {path}: a floor sets no cookie"
                );
            }
            assert!(variant.is_floor() && !variant.keeps_sessions());
            assert_eq!(variant.ceiling(), ceiling);
            assert_eq!(Variant::parse(name), Some(variant));
        }
    }

    /// A session variant answers 500 to `/read` and `/write` naming a
    /// session it does not have (wrk counts it as an error), and keeps what
    /// `/write` saved.
    #[test]
    fn a_lost_session_is_a_500_not_a_fast_answer() {
        for variant in [
            Variant::SessionkitMemory,
            Variant::SessionkitActixMemory,
            Variant::TowerSessionsMemory,
            Variant::SessionkitCookie,
            Variant::ActixCookie,
        ] {
            let name = variant.name();
            let port = free_port();
            std::thread::spawn(move || serve(variant, port, None));
            let new = wait_for_answer(port, name);
            let cookie = new.set_cookie.expect("/new sets a cookie");
            let (cookie_name, _) = cookie.split_once('=').unwrap();
            for path in ["/read", "/write"] {
                let unknown = format!("{cookie_name}=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
                let reply = wire::http_get(port, path, Some(&unknown)).unwrap();
                assert_eq!(reply.status, 500, "{name} {path} with an unknown session");
                let reply = wire::http_get(port, path, None).unwrap();
                assert_eq!(reply.status, 500, "{name} {path} with no cookie");
            }
            let write = wire::http_get(port, "/write", Some(&cookie)).unwrap();
            assert_eq!((write.status, write.body.trim()), (200, "2"), "{name}");
            let after = write.set_cookie.unwrap_or(cookie);
            let read = wire::http_get(port, "/read", Some(&after)).unwrap();
            assert_eq!(
                (read.status, read.body.trim()),
                (200, "2 bench-user"),
                "{name}"
            );
        }
    }

    /// The cookie variants seal with the AEAD their names say: the
    /// envelope's second byte is the algorithm (1 = XChaCha20-Poly1305, 2 =
    /// AES-256-GCM; `sessionkit::codec::envelope`), read off a real `/new`.
    #[test]
    fn the_cookie_variants_seal_with_the_algorithm_they_name() {
        use base64::Engine as _;
        for (variant, algorithm) in [
            (Variant::SessionkitCookie, 1u8),
            (Variant::SessionkitCookieAes, 2),
        ] {
            let port = free_port();
            std::thread::spawn(move || serve(variant, port, None));
            let reply = wait_for_answer(port, variant.name());
            assert_eq!(reply.status, 200, "{}", variant.name());
            let set_cookie = reply.set_cookie.expect("/new sets the session cookie");
            let (_, value) = set_cookie.split_once('=').expect("name=value");
            let envelope = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(value)
                .expect("base64url");
            assert_eq!(envelope[1], algorithm, "{}", variant.name());
        }
    }

    #[test]
    fn the_memory_bound_is_a_positive_whole_number_or_unset() {
        assert_eq!(parse_max_entries(Err(VarError::NotPresent)).unwrap(), None);
        assert_eq!(parse_max_entries(Ok("1000".into())).unwrap(), Some(1000));
        assert_eq!(parse_max_entries(Ok(" 64 ".into())).unwrap(), Some(64));
        for bad in [
            "",
            "0",
            "-5",
            "1e6",
            "10 000",
            "abc",
            "99999999999999999999999",
        ] {
            let e = parse_max_entries(Ok(bad.into())).unwrap_err();
            assert!(
                e.to_string()
                    .contains("SESSIONKIT_BENCH_MEMORY_MAX_ENTRIES"),
                "{e}"
            );
        }
        let not_unicode = std::ffi::OsString::from("x");
        assert!(parse_max_entries(Err(VarError::NotUnicode(not_unicode))).is_err());
    }

    #[test]
    fn the_worker_count_is_a_positive_number_or_a_clear_error() {
        let parse = |v: &str| parse_positive(ACTIX_WORKERS_ENV, Ok(v.into()), "workers");
        assert_eq!(parse("2").unwrap(), Some(2));
        for bad in ["", "0", "-1", "two", "1.5"] {
            let e = parse(bad).unwrap_err();
            assert!(e.to_string().contains(ACTIX_WORKERS_ENV), "{e}");
            assert!(e.to_string().contains("workers"), "{e}");
        }
    }
}
