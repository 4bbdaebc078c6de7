//! The attack suite's harness, shared by every `tests/attack_<store>.rs`.
//!
//! Each attack is written once, in [`attacks`], as a function over a running
//! [`App`]: an axum router behind [`SessionLayer`] on a real TCP socket,
//! driven by reqwest with cookies handled by hand (no cookie jar: the
//! attacker decides exactly which cookie goes out). The per-store files only
//! say how to build their store and call [`attack_suite!`].
//!
//! Bounds stated here and asserted by the attacks (generous on purpose: the
//! tests run on a shared 2-core machine in debug builds; the figures seen are
//! printed so the report can quote them):
//! - one hostile request (1 MiB `Cookie` header, 1000 cookies, 256 KiB
//!   session cookie, injection strings) is answered within [`HOSTILE_REQUEST_BOUND`];
//! - the server's resident memory grows by less than [`HOSTILE_RSS_BOUND`]
//!   across the hostile-input attack.

#![allow(dead_code)] // each attack binary uses part of the harness

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::Router;
use sessionkit::{
    BindingKey, Config, ConfigBuilder, ManualClock, QueryStore, Session, SessionId, SessionLayer,
    Sessions, Store,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

pub mod attacks;

/// The session data of the attacked application.
#[derive(serde::Serialize, serde::Deserialize, Default, Clone, Debug)]
pub struct Data {
    /// The logged-in user, if any.
    pub user: Option<String>,
    /// A counter the application bumps.
    pub counter: u64,
    /// Free-form JSON (preferences, say): the kind of field a nesting bomb
    /// aims at, since a typed field would reject the first wrong token.
    pub extra: Option<serde_json::Value>,
}

/// Idle timeout of the attacked application.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// Absolute lifetime of the attacked application.
pub const ABSOLUTE: Duration = Duration::from_secs(2 * 3600);
/// Time bound for one hostile request (see the module docs).
pub const HOSTILE_REQUEST_BOUND: Duration = Duration::from_secs(5);
/// Resident-memory growth bound across the hostile-input attack.
pub const HOSTILE_RSS_BOUND: u64 = 64 * 1024 * 1024;

/// Lifecycle events the application saw.
#[derive(Default, Debug)]
pub struct Events {
    pub expired: AtomicUsize,
    pub deleted: AtomicUsize,
    pub regenerated: AtomicUsize,
    pub ambiguous: AtomicUsize,
}

/// What a store's test file gets to build its store with.
pub struct Kit {
    /// The clock of the configuration (give it to the store too).
    pub clock: ManualClock,
    /// The validated configuration.
    pub config: Config,
    events: Arc<Events>,
}

impl Kit {
    /// The attacked application's configuration: default cookie rules,
    /// 30 min idle, 2 h absolute, a manual clock, counting callbacks.
    pub fn new() -> Self {
        Self::with(|b| b)
    }

    /// [`Kit::new`] with sessions bound to the client's User-Agent.
    pub fn bound_to_user_agent() -> Self {
        Self::with(|b| {
            b.bind_to_user_agent(true)
                .binding_key(BindingKey::new([7u8; 32]))
        })
    }

    /// [`Kit::new`], with more settings from `configure`.
    pub fn with(configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Self {
        let clock = ManualClock::new();
        let events = Arc::new(Events::default());
        let (e1, e2, e3, e4) = (
            events.clone(),
            events.clone(),
            events.clone(),
            events.clone(),
        );
        let builder = Config::builder()
            .idle_timeout(IDLE)
            .absolute_lifetime(ABSOLUTE)
            .clock(clock.clone())
            .on_expired(move |_| {
                e1.expired.fetch_add(1, Ordering::SeqCst);
            })
            .on_deleted(move |_| {
                e2.deleted.fetch_add(1, Ordering::SeqCst);
            })
            .on_regenerated(move |_| {
                e3.regenerated.fetch_add(1, Ordering::SeqCst);
            })
            .on_ambiguous_cookie(move |_| {
                e4.ambiguous.fetch_add(1, Ordering::SeqCst);
            });
        let config = configure(builder).build().expect("valid config");
        Kit {
            clock,
            config,
            events,
        }
    }

    /// Serves a store that can revoke by owner (`POST /admin/revoke/{user}`).
    pub async fn serve_query<S: QueryStore<Data>>(self, store: S) -> App {
        let sessions = Sessions::new(store, self.config.clone());
        let s = sessions.clone();
        let revoke = Router::new().route(
            "/admin/revoke/{user}",
            post(move |Path(user): Path<String>| {
                let s = s.clone();
                async move { s.revoke_owner(&user).await.unwrap().to_string() }
            }),
        );
        self.serve_with(sessions, revoke, true).await
    }

    /// Serves a store that cannot revoke (the cookie store).
    pub async fn serve<S: Store<Data>>(self, store: S) -> App {
        let sessions = Sessions::new(store, self.config.clone());
        self.serve_with(sessions, Router::new(), false).await
    }

    async fn serve_with<S: Store<Data>>(
        self,
        sessions: Sessions<Data, S>,
        extra: Router,
        server_side: bool,
    ) -> App {
        let gate = Arc::new(Gate::default());
        let app = Router::new()
            .route("/login/{user}", post(login))
            .route("/me", get(me))
            .route("/bump", post(bump))
            .route("/logout", post(logout))
            .route("/slow-bump", post(slow_bump))
            .with_state(gate.clone())
            .merge(extra)
            .layer(SessionLayer::new(&sessions));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap()
        });
        App {
            addr,
            base: format!("http://{addr}"),
            clock: self.clock,
            events: self.events,
            gate,
            server_side,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
        }
    }
}

/// Lets a test hold a request between its load and its save.
#[derive(Default)]
pub struct Gate {
    entered: Notify,
    release: Notify,
}

/// Logs in: a new id on the privilege change (the fixation defence), the
/// user as owner (for revoke), the user in the data.
async fn login(s: Session<Data>, Path(user): Path<String>) -> &'static str {
    s.regenerate_id();
    s.set_owner(Some(user.clone()));
    s.data_mut().user = Some(user);
    "ok"
}

/// `<user or anon>:<counter>`.
async fn me(s: Session<Data>) -> String {
    let d = s.data();
    format!("{}:{}", d.user.as_deref().unwrap_or("anon"), d.counter)
}

async fn bump(s: Session<Data>) -> String {
    let mut d = s.data_mut();
    d.counter += 1;
    d.counter.to_string()
}

async fn logout(s: Session<Data>) -> &'static str {
    s.destroy();
    "bye"
}

/// Loads the session, then waits for the test to release it, then bumps.
async fn slow_bump(State(gate): State<Arc<Gate>>, s: Session<Data>) -> String {
    let _ = s.data().counter;
    gate.entered.notify_one();
    gate.release.notified().await;
    let mut d = s.data_mut();
    d.counter += 1;
    d.counter.to_string()
}

/// A running attacked application.
pub struct App {
    pub addr: SocketAddr,
    pub base: String,
    pub clock: ManualClock,
    pub events: Arc<Events>,
    pub gate: Arc<Gate>,
    /// Whether the store keeps sessions server-side (can revoke and delete).
    pub server_side: bool,
    client: reqwest::Client,
}

/// What the session cookie did in a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetCookie {
    /// No `Set-Cookie` for the session cookie.
    Unchanged,
    /// A new value.
    Set(String),
    /// Expired.
    Removed,
}

/// One response, as the attacker sees it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub cookie: SetCookie,
}

impl Reply {
    /// The new cookie value; panics when none was set.
    pub fn new_cookie(&self) -> String {
        match &self.cookie {
            SetCookie::Set(v) => v.clone(),
            other => panic!("expected a new session cookie, got {other:?} ({self:?})"),
        }
    }
}

impl App {
    /// Sends a request with exactly this `Cookie` header (or none).
    pub async fn raw_cookie(&self, method: &str, path: &str, cookie: Option<&str>) -> Reply {
        self.send(method, path, cookie, None).await
    }

    /// Sends a request carrying the session cookie, as the browser `user_agent`.
    pub async fn call_as(
        &self,
        user_agent: &str,
        method: &str,
        path: &str,
        session: Option<&str>,
    ) -> Reply {
        let header = session.map(|s| format!("__Host-id={s}"));
        self.send(method, path, header.as_deref(), Some(user_agent))
            .await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        user_agent: Option<&str>,
    ) -> Reply {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        if let Some(ua) = user_agent {
            req = req.header("user-agent", ua);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let mut cookie = SetCookie::Unchanged;
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            if let Some(rest) = v.strip_prefix("__Host-id=") {
                let value = &rest[..rest.find(';').unwrap_or(rest.len())];
                cookie = if value.is_empty() || v.contains("Max-Age=0") {
                    SetCookie::Removed
                } else {
                    SetCookie::Set(value.to_owned())
                };
            }
        }
        Reply {
            status,
            body: resp.text().await.unwrap(),
            cookie,
        }
    }

    /// Sends a request carrying the session cookie `__Host-id=<session>` (the default name).
    pub async fn call(&self, method: &str, path: &str, session: Option<&str>) -> Reply {
        let header = session.map(|s| format!("__Host-id={s}"));
        self.raw_cookie(method, path, header.as_deref()).await
    }

    /// `GET /me` with this session cookie: `<user or anon>:<counter>`.
    pub async fn me(&self, session: &str) -> String {
        let r = self.call("GET", "/me", Some(session)).await;
        assert_eq!(r.status, 200, "{r:?}");
        r.body
    }

    /// A fresh anonymous session with one bump: the attacker's planted cookie.
    pub async fn anonymous_session(&self) -> String {
        let r = self.call("POST", "/bump", None).await;
        assert_eq!(r.status, 200);
        r.new_cookie()
    }

    /// Logs in as `user` from the session `from` (if any); returns the new cookie.
    pub async fn login(&self, user: &str, from: Option<&str>) -> String {
        let r = self.call("POST", &format!("/login/{user}"), from).await;
        assert_eq!(r.status, 200, "{r:?}");
        r.new_cookie()
    }

    /// Sends raw bytes as a whole HTTP/1.1 request on a new connection and
    /// returns the status line's code, or `None` when the server closed the
    /// connection without answering. For requests reqwest refuses to build
    /// (CR, LF or NUL in a header).
    pub async fn raw_request(&self, bytes: &[u8]) -> Option<u16> {
        let mut tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        if tcp.write_all(bytes).await.is_err() {
            return None;
        }
        let mut buf = Vec::new();
        let read = tokio::time::timeout(HOSTILE_REQUEST_BOUND, tcp.read_to_end(&mut buf)).await;
        if !matches!(read, Ok(Ok(_))) && buf.is_empty() {
            return None;
        }
        let head = String::from_utf8_lossy(&buf);
        head.split(' ').nth(1).and_then(|c| c.parse().ok())
    }

    /// Holds the next `/slow-bump` between its load and its save: returns
    /// once it has loaded.
    pub async fn wait_for_slow_request(&self) {
        self.gate.entered.notified().await;
    }

    /// Lets the held `/slow-bump` go on.
    pub fn release_slow_request(&self) {
        self.gate.release.notify_one();
    }
}

/// A random, well-formed session id that names no session.
pub fn random_id() -> String {
    SessionId::generate().encode()
}

/// Resident set size of this process, in bytes (from `/proc/self/status`).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Peak resident set size of this process, in bytes.
pub fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Times `f`, prints the figure, asserts the bound.
pub async fn within<F: std::future::Future>(what: &str, bound: Duration, f: F) -> F::Output {
    let started = Instant::now();
    let out = f.await;
    let took = started.elapsed();
    println!("{what}: {took:?} (bound {bound:?})");
    assert!(took < bound, "{what} took {took:?}, over {bound:?}");
    out
}

/// Runs `f` on a single-threaded runtime with a metrics recorder installed
/// for this thread (server, store and client all run on it), and returns the
/// value of counter `name` at the end.
pub fn counting<F, Fut>(name: &str, f: F) -> u64
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f())
    });
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| k.key().name() == name)
        .map(|(.., v)| match v {
            DebugValue::Counter(n) => n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

/// Generates one `#[tokio::test]` per attack, each on a fresh app from `$make`
/// (an `async fn() -> App`). Server-side-only attacks are listed by the caller.
#[macro_export]
macro_rules! attack_suite {
    ($make:path; $($attack:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $attack() {
                attack_support::attacks::$attack(&$make().await).await;
            }
        )*
    };
}

/// Every attack for a store that keeps sessions server-side (it can revoke
/// and delete): one list, so a new attack reaches every such store at once.
#[macro_export]
macro_rules! server_side_attack_suite {
    ($make:path) => {
        attack_suite!($make;
            fixation_a_planted_session_does_not_become_the_victims_login,
            fixation_the_previous_id_dies_when_the_same_user_logs_in_again,
            replay_after_logout_gives_a_fresh_session,
            replay_after_owner_revoke_gives_a_fresh_session,
            replay_after_idle_expiry_gives_a_fresh_session,
            replay_after_absolute_expiry_gives_a_fresh_session,
            tampering_any_changed_character_gives_a_fresh_session,
            key_injection_gives_a_fresh_session,
            ambiguous_or_lookalike_cookies_give_no_session,
            hostile_headers_stay_within_time_and_memory_bounds,
            race_a_slow_save_after_logout_leaves_the_session_deleted,
            race_parallel_logins_give_independent_fixation_safe_sessions,
        );
    };
}
