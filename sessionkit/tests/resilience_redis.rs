//! `Resilient<RedisStore>` behind a real axum server, against a real
//! `redis-server` that the tests kill (SIGKILL), restart, pause (SIGSTOP) and
//! resume (SIGCONT), with 50 concurrent HTTP clients.
//!
//! Shown here:
//! - no panic; every response is either the right answer or the documented
//!   503 (text body, `Retry-After`, no `Set-Cookie`);
//! - the breaker opens after the threshold; while it is open, requests fail
//!   fast (the latency is measured and printed; the bound is generous);
//! - Redis restarted → half-open probe → closed, service resumes, and the
//!   sessions written before the kill are intact (append-only file, fsync
//!   always);
//! - a hung Redis makes operations time out at the configured bound, and
//!   service resumes after SIGCONT;
//! - a dropped connection (Redis blinked) is retried: clients never notice;
//! - a create or regenerate whose first attempt timed out but was applied
//!   once Redis woke up is reported as saved, not as a collision or "gone".

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;
use parking_lot::Mutex;
use reqwest::header::{COOKIE, RETRY_AFTER, SET_COOKIE};
use reqwest::StatusCode;
use sessionkit::expiry::ExpiryPolicy;
use sessionkit::resilience::{BreakerState, ResilienceConfig, Resilient};
use sessionkit::store::redis::RedisStore;
use sessionkit::store::{Save, SaveKind, SaveOutcome};
use sessionkit::testing::redis_server::RedisServer;
use sessionkit::{Config, Record, Session, SessionId, SessionLayer, Sessions, Store, StoreError};

#[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
struct Visits {
    n: u64,
}

type Guarded = Resilient<RedisStore<Visits>>;

const CLIENTS: usize = 50;
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(150);
const OPERATION_TIMEOUT: Duration = Duration::from_millis(400);
const FAILURE_THRESHOLD: u32 = 5;
const RESET_TIMEOUT: Duration = Duration::from_secs(2);
/// The two tests measure time: they run one after the other, not side by side.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Each client's pause between requests: 50 clients make about 1000 requests
/// a second, which a debug build on two shared cores serves without queueing.
const PACE: Duration = Duration::from_millis(50);

async fn count(s: Session<Visits>) -> String {
    let mut d = s.data_mut();
    d.n += 1;
    d.n.to_string()
}

async fn peek(s: Session<Visits>) -> String {
    s.data().n.to_string()
}

struct App {
    addr: SocketAddr,
    sessions: Sessions<Visits, Guarded>,
    transitions: Arc<Mutex<Vec<(BreakerState, BreakerState)>>>,
    http: reqwest::Client,
}

async fn start(server: &RedisServer) -> App {
    start_named(server, "redis").await
}

async fn start_named(server: &RedisServer, name: &str) -> App {
    let redis = RedisStore::builder(server.url())
        .connection_timeout(Duration::from_millis(200))
        .connect()
        .await
        .expect("connect to the test redis-server");
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let seen = transitions.clone();
    let resilience = ResilienceConfig::builder()
        .name(name)
        .attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .max_attempts(2)
        .backoff(Duration::from_millis(5), Duration::from_millis(50))
        .failure_threshold(FAILURE_THRESHOLD)
        .reset_timeout(RESET_TIMEOUT)
        .half_open_probes(1)
        .on_breaker_transition(move |t| seen.lock().push((t.from, t.to)))
        .build()
        .unwrap();
    let config = Config::builder()
        .dangerously_allow_insecure_http()
        .build()
        .unwrap();
    let sessions = Sessions::new(Resilient::new(redis, resilience), config);
    let app = Router::new()
        .route("/count", post(count))
        .route("/peek", get(peek))
        .layer(SessionLayer::new(&sessions));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    App {
        addr,
        sessions,
        transitions,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    }
}

/// One HTTP exchange as a client saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    took: Duration,
    status: StatusCode,
    body: String,
    set_cookie: bool,
    retry_after: Option<String>,
}

impl App {
    async fn call(&self, post: bool, path: &str, cookie: Option<&str>) -> Seen {
        let url = format!("http://{}{}", self.addr, path);
        let mut req = if post {
            self.http.post(url)
        } else {
            self.http.get(url)
        };
        if let Some(c) = cookie {
            req = req.header(COOKIE, format!("id={c}"));
        }
        let at = Instant::now();
        let resp = req.send().await.expect("the server always answers");
        let took = at.elapsed();
        let status = resp.status();
        let set_cookie = resp.headers().contains_key(SET_COOKIE);
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        Seen {
            at,
            took,
            status,
            body: resp.text().await.unwrap(),
            set_cookie,
            retry_after,
        }
    }

    /// A session whose counter is `n`, and its cookie value.
    async fn session_with(&self, n: u64) -> String {
        let url = format!("http://{}/count", self.addr);
        let first = self.http.post(&url).send().await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        let set = first.headers()[SET_COOKIE].to_str().unwrap().to_owned();
        let cookie = set.split(';').next().unwrap()["id=".len()..].to_owned();
        for _ in 1..n {
            let r = self.call(true, "/count", Some(&cookie)).await;
            assert_eq!(r.status, StatusCode::OK);
        }
        cookie
    }

    fn breaker(&self) -> BreakerState {
        self.sessions.store().breaker().state()
    }

    async fn wait_for(&self, what: &str, limit: Duration, mut ok: impl FnMut(&App) -> bool) {
        let start = Instant::now();
        while !ok(self) {
            assert!(
                start.elapsed() < limit,
                "{what} did not happen within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A response is either the right counter or the documented 503.
fn assert_allowed(seen: &Seen, expected_n: u64) {
    match seen.status {
        StatusCode::OK => assert_eq!(
            seen.body,
            expected_n.to_string(),
            "a served session must hold what was written before the fault"
        ),
        StatusCode::SERVICE_UNAVAILABLE => {
            assert!(
                seen.body.contains("temporarily unavailable"),
                "{:?}",
                seen.body
            );
            assert_eq!(seen.retry_after.as_deref(), Some("1"));
            assert!(!seen.set_cookie, "a 503 never sets the cookie");
        }
        other => panic!("undocumented response {other}: {:?}", seen.body),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn describe(t: &[(BreakerState, BreakerState)]) -> String {
    t.iter()
        .map(|(a, b)| format!("{a}->{b}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_fails_fast_then_recovers_with_sessions_intact() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut server =
        RedisServer::start_with_args(["--appendonly", "yes", "--appendfsync", "always"])
            .unwrap_or_else(|e| panic!("{e}"));
    let app = Arc::new(start(&server).await);

    // 50 clients, each with a session holding its own counter.
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let n = (i % 5 + 1) as u64;
        clients.push((app.session_with(n).await, n));
    }

    // All 50 read their session in a loop (paced, so that the machine's two
    // cores measure the store, not a CPU queue).
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (cookie, n) in clients.clone() {
        let (app, stop) = (app.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut log = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let seen = app.call(false, "/peek", Some(&cookie)).await;
                assert_allowed(&seen, n);
                log.push(seen);
                tokio::time::sleep(PACE).await;
            }
            log
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // SIGKILL.
    let killed_at = Instant::now();
    tokio::task::block_in_place(|| server.kill()).unwrap();
    app.wait_for("the breaker opening", Duration::from_secs(10), |a| {
        a.breaker() == BreakerState::Open
    })
    .await;
    let opened_at = Instant::now();
    println!("breaker opened {:?} after SIGKILL", opened_at - killed_at);
    // Clients run into the open circuit for most of the reset timeout; the
    // test meanwhile times the store calls themselves, without HTTP.
    let open_window_end = opened_at + RESET_TIMEOUT - Duration::from_millis(500);
    let mut direct = Vec::new();
    while Instant::now() < open_window_end {
        let started = Instant::now();
        let r = app.sessions.store().load(&clients[1].0).await;
        direct.push(started.elapsed());
        assert!(matches!(r, Err(StoreError::CircuitOpen)), "{r:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    direct.sort();

    // A write while Redis is gone: the documented error, no cookie.
    let (cookie0, n0) = clients[0].clone();
    let w = app.call(true, "/count", Some(&cookie0)).await;
    assert_eq!(w.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!w.set_cookie);

    // Restart on the same port and directory: Redis replays its append-only
    // file. (The helper waits with blocking sleeps: keep them off the workers.)
    tokio::task::block_in_place(|| server.restart()).unwrap();
    let restarted_at = Instant::now();
    app.wait_for("the breaker closing", Duration::from_secs(20), |a| {
        a.breaker() == BreakerState::Closed
    })
    .await;
    println!(
        "breaker closed {:?} after the restart",
        restarted_at.elapsed()
    );
    // Service resumes for every client.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    for t in tasks {
        logs.push(t.await.expect("no client task panicked"));
    }

    // The breaker went closed → open → half-open → closed (maybe re-opening
    // on a probe that ran before Redis was back).
    let transitions = app.transitions.lock().clone();
    println!("breaker transitions: {}", describe(&transitions));
    assert_eq!(
        transitions.first(),
        Some(&(BreakerState::Closed, BreakerState::Open))
    );
    assert_eq!(
        transitions.last(),
        Some(&(BreakerState::HalfOpen, BreakerState::Closed))
    );

    // Fail-fast latency: requests answered 503 entirely inside the open window.
    let mut open_latencies: Vec<Duration> = logs
        .iter()
        .flatten()
        .filter(|s| {
            s.status == StatusCode::SERVICE_UNAVAILABLE
                && s.at >= opened_at
                && s.at + s.took <= open_window_end
        })
        .map(|s| s.took)
        .collect();
    open_latencies.sort();
    assert!(
        open_latencies.len() >= 200,
        "too few requests measured while open: {}",
        open_latencies.len()
    );
    let mut healthy: Vec<Duration> = logs
        .iter()
        .flatten()
        .filter(|s| s.status == StatusCode::OK && s.at + s.took <= killed_at)
        .map(|s| s.took)
        .collect();
    healthy.sort();
    let p50 = percentile(&open_latencies, 0.5);
    let p99 = percentile(&open_latencies, 0.99);
    println!(
        "while open: {} requests answered 503, p50 {:?}, p99 {:?}, max {:?} \
         (same run, Redis healthy: {} requests answered 200, p50 {:?}; \
         without the breaker a request waits up to {:?})",
        open_latencies.len(),
        p50,
        p99,
        open_latencies.last().unwrap(),
        healthy.len(),
        percentile(&healthy, 0.5),
        OPERATION_TIMEOUT
    );
    println!(
        "while open, the store call itself: {} calls, p50 {:?}, max {:?}",
        direct.len(),
        percentile(&direct, 0.5),
        direct.last().unwrap()
    );
    assert!(
        percentile(&direct, 0.5) < Duration::from_millis(5),
        "fail-fast p50 of the store call"
    );
    // Generous for the whole HTTP exchange: on two shared cores other builds
    // can queue any request for milliseconds (see the healthy p50 printed
    // above); what matters is that nobody waits for a timeout.
    assert!(
        p50 < Duration::from_millis(50),
        "fail-fast HTTP p50 {p50:?}"
    );
    assert!(
        p99 < OPERATION_TIMEOUT,
        "while open no request waits for a timeout (p99 {p99:?})"
    );

    // Every client got answers after the restart, and every session written
    // before the kill is intact.
    for log in &logs {
        assert!(log.last().unwrap().status == StatusCode::OK);
    }
    for (cookie, n) in &clients {
        let r = app.call(false, "/peek", Some(cookie)).await;
        assert_eq!((r.status, r.body.clone()), (StatusCode::OK, n.to_string()));
    }
    let r = app.call(true, "/count", Some(&cookie0)).await;
    assert_eq!(r.body, (n0 + 1).to_string(), "writes work again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_makes_operations_time_out_at_the_bound_and_sigcont_recovers() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let app = start(&server).await;
    let cookie = app.session_with(3).await;

    tokio::task::block_in_place(|| server.pause()).unwrap();
    // One store operation: it ends with a timeout, at the configured bound.
    let store = app.sessions.store();
    let started = Instant::now();
    let r = store.load(&cookie).await;
    let took = started.elapsed();
    println!("hung Redis: load failed after {took:?} with {r:?} (operation_timeout {OPERATION_TIMEOUT:?})");
    assert!(matches!(r, Err(StoreError::Timeout(_))), "{r:?}");
    assert!(
        took >= ATTEMPT_TIMEOUT,
        "it waited for the bound ({took:?})"
    );
    assert!(
        took < OPERATION_TIMEOUT + Duration::from_secs(1),
        "and not much longer ({took:?})"
    );

    // Through HTTP: the documented 503 after the bound, until the breaker opens.
    let mut answers = Vec::new();
    while app.breaker() != BreakerState::Open {
        let seen = app.call(false, "/peek", Some(&cookie)).await;
        assert_allowed(&seen, 3);
        assert_eq!(seen.status, StatusCode::SERVICE_UNAVAILABLE);
        answers.push(seen.took);
        assert!(
            answers.len() <= FAILURE_THRESHOLD as usize,
            "the breaker opens"
        );
    }
    println!("hung Redis: HTTP 503 after {answers:?}, then the breaker opened");
    let fast = app.call(false, "/peek", Some(&cookie)).await;
    assert_eq!(fast.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        fast.took < OPERATION_TIMEOUT,
        "open: no waiting ({:?})",
        fast.took
    );

    tokio::task::block_in_place(|| server.resume()).unwrap();
    // The next request after the reset timeout is the probe that closes it.
    let resumed_at = Instant::now();
    loop {
        let r = app.call(false, "/peek", Some(&cookie)).await;
        assert_allowed(&r, 3);
        if r.status == StatusCode::OK {
            break;
        }
        assert!(
            resumed_at.elapsed() < RESET_TIMEOUT + Duration::from_secs(20),
            "service did not resume after SIGCONT"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("service resumed {:?} after SIGCONT", resumed_at.elapsed());
    assert_eq!(app.breaker(), BreakerState::Closed);
    let r = app.call(true, "/count", Some(&cookie)).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_whose_first_attempt_landed_during_a_hang_are_reported_as_saved() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    // redis-rs bounds every command itself (500 ms unless told otherwise):
    // lift that bound so the decorator's is the one that fires.
    let redis = RedisStore::<Visits>::builder(server.url())
        .response_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    // Attempt 1 times out at 1 s with its command queued in the stopped
    // server; attempt 2 is sent right after. Redis resumes at 1.5 s, applies
    // attempt 1, and answers attempt 2 with a collision (create) or "gone"
    // (regenerate) within its own bound.
    let store = Resilient::new(
        redis,
        ResilienceConfig::builder()
            .attempt_timeout(Duration::from_secs(1))
            .operation_timeout(Duration::from_secs(5))
            .max_attempts(2)
            .backoff(Duration::from_millis(1), Duration::from_millis(1))
            .build()
            .unwrap(),
    );
    let pause_then_resume = |server: &RedisServer| {
        tokio::task::block_in_place(|| server.pause()).unwrap();
        let pid = server.pid();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let status = tokio::process::Command::new("kill")
                .arg("-CONT")
                .arg(pid.to_string())
                .status()
                .await
                .unwrap();
            assert!(status.success());
        })
    };
    let mut record = Record::new(
        SessionId::generate(),
        Visits { n: 7 },
        std::time::SystemTime::now(),
        &ExpiryPolicy::default(),
    );

    tokio::task::block_in_place(|| server.command("CONFIG RESETSTAT")).unwrap();
    let resumed = pause_then_resume(&server);
    let started = Instant::now();
    let created = store.save(Save::create(&record)).await;
    resumed.await.unwrap();
    let took = started.elapsed();
    let stats = tokio::task::block_in_place(|| server.command("INFO commandstats")).unwrap();
    let calls = |cmd: &str| {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse::<u32>().unwrap())
    };
    println!(
        "create across a hang: {} after {took:?}; Redis ran {} SET NX and {} GET",
        if created.is_ok() { "saved" } else { "failed" },
        calls("set"),
        calls("get")
    );
    assert_eq!(created.unwrap(), SaveOutcome::Saved(record.id.encode()));
    // Both attempts reached Redis (an anonymous create is a plain SET NX),
    // and the second one's collision was checked with one GET: the
    // reconciliation ran, not a lucky second attempt.
    assert_eq!(
        (calls("set"), calls("get"), calls("evalsha")),
        (2, 1, 0),
        "{stats}"
    );
    assert_eq!(
        store
            .load(&record.id.encode())
            .await
            .unwrap()
            .unwrap()
            .data
            .n,
        7
    );

    let old = record.id;
    record = store.load(&old.encode()).await.unwrap().unwrap();
    record.id = SessionId::generate();
    let resumed = pause_then_resume(&server);
    let moved = store
        .save(Save::new(&record, None, SaveKind::Regenerate { old }))
        .await;
    resumed.await.unwrap();
    println!(
        "regenerate across a hang: {}",
        if moved.is_ok() { "saved" } else { "failed" }
    );
    assert_eq!(moved.unwrap(), SaveOutcome::Saved(record.id.encode()));
    assert!(store.load(&old.encode()).await.unwrap().is_none());
    assert_eq!(
        store
            .load(&record.id.encode())
            .await
            .unwrap()
            .unwrap()
            .data
            .n,
        7
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_retried_and_clients_never_notice() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // The only test here that reads metrics: a global recorder, read by this
    // test's own breaker name.
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("no other recorder in this test binary");
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let drop_connections = || {
        let out = tokio::task::block_in_place(|| server.command("CLIENT KILL TYPE normal"));
        assert!(out.unwrap().starts_with(':'));
    };

    // Control: the bare store does see the blink.
    let bare = RedisStore::<Visits>::connect(server.url()).await.unwrap();
    let mut bare_failures = 0;
    for _ in 0..20 {
        drop_connections();
        if bare.load(&SessionId::generate().encode()).await.is_err() {
            bare_failures += 1;
        }
    }

    // Twenty blinks, each amid ordinary traffic (which earns the retry
    // budget back: a blink costs about one retry, ten requests earn two).
    let app = start_named(&server, "blink").await;
    let cookie = app.session_with(1).await;
    let mut n = 1;
    for _ in 0..20 {
        drop_connections();
        for _ in 0..10 {
            n += 1;
            let r = app.call(true, "/count", Some(&cookie)).await;
            assert_eq!((r.status, r.body), (StatusCode::OK, n.to_string()));
        }
    }
    let snapshot = snapshotter.snapshot().into_vec();
    let counter = |name: &str| -> u64 {
        snapshot
            .iter()
            .filter(|(k, _, _, _)| {
                k.key().name() == name
                    && k.key()
                        .labels()
                        .any(|l| l.key() == "breaker" && l.value() == "blink")
            })
            .map(|(_, _, _, v)| match v {
                metrics_util::debugging::DebugValue::Counter(n) => *n,
                _ => 0,
            })
            .sum()
    };
    let retries = counter("sessionkit_store_retries_total");
    println!(
        "Redis dropped every connection 20 times: the bare store failed the next call \
         {bare_failures} times out of 20; through Resilient all 200 requests answered 200, \
         with {retries} retries and {} budget refusals",
        counter("sessionkit_retry_budget_exhausted_total")
    );
    assert!(retries >= 1, "the blinks were absorbed by retries");
    assert_eq!(app.breaker(), BreakerState::Closed);
}

/// Loses the reply of its first save, after that save landed and another
/// request saved the same session (`n` set to 5) in the meantime.
struct LosesFirstReply<S> {
    inner: Arc<S>,
    lost: AtomicBool,
}

#[async_trait::async_trait]
impl<S: Store<Visits>> Store<Visits> for LosesFirstReply<S> {
    async fn load(&self, cookie_value: &str) -> Result<Option<Record<Visits>>, StoreError> {
        self.inner.load(cookie_value).await
    }

    async fn save(&self, save: Save<'_, Visits>) -> Result<SaveOutcome, StoreError> {
        let out = self.inner.save(save).await;
        if self.lost.swap(true, Ordering::SeqCst) {
            return out;
        }
        out?;
        let mut other = self
            .inner
            .load(&save.record.id.encode())
            .await?
            .expect("the first attempt landed");
        let base = other.data.clone();
        other.data.n = 5;
        self.inner.save(Save::update(&other, Some(&base))).await?;
        Err(StoreError::Timeout(Duration::from_millis(150)))
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }
}

/// An update whose first attempt landed but whose reply was lost, repeated
/// by the decorator after another request saved the session: the repeat
/// finds its own write id in the stored record and answers "saved" without
/// writing, so the other request's value stands (reapplied, this update
/// would have put `n` back to 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_repeated_after_a_lost_reply_keeps_a_write_made_in_between() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let redis = RedisStore::<Visits>::builder(server.url())
        .connect()
        .await
        .unwrap();
    let id = repeat_an_update_after_its_reply_is_lost(Arc::new(redis.clone())).await;
    let now = redis.load(&id.encode()).await.unwrap().unwrap();
    assert_eq!(now.data.n, 5, "the write made in between stands");
    assert_eq!(now.version, 3, "nothing written after it");
}

/// Creates a session in `inner`, then updates it through `Resilient` over
/// `inner` losing the first reply (after another request's write): the
/// repeat answers `Kept`. The session's id.
async fn repeat_an_update_after_its_reply_is_lost<S: Store<Visits>>(inner: Arc<S>) -> SessionId {
    let r = Record::new(
        SessionId::generate(),
        Visits { n: 0 },
        std::time::SystemTime::now(),
        &ExpiryPolicy::default(),
    );
    inner.save(Save::create(&r)).await.unwrap();
    let loaded = inner.load(&r.id.encode()).await.unwrap().unwrap();
    let store = Resilient::new(
        LosesFirstReply {
            inner,
            lost: AtomicBool::new(false),
        },
        ResilienceConfig::builder().build().unwrap(),
    );
    let mut mine = loaded.clone();
    mine.data.n = 1;
    let out = store
        .save(Save::update(&mine, Some(&loaded.data)))
        .await
        .unwrap();
    assert!(matches!(out, SaveOutcome::Kept), "{out:?}");
    r.id
}

/// The same through the clustered store: the repeat is recognised, and the
/// node's cache, asked next, holds what Redis holds (the write made in
/// between), not this request's record.
#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clustered_update_repeated_after_a_lost_reply_keeps_a_write_made_in_between() {
    use sessionkit::store::cluster::{ClusterOptions, ClusteredStore};

    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let node = Arc::new(
        ClusteredStore::<Visits>::connect(&server.url(), ClusterOptions::new([7; 32]))
            .await
            .unwrap(),
    );
    let redis = RedisStore::<Visits>::builder(server.url())
        .connect()
        .await
        .unwrap();
    let id = repeat_an_update_after_its_reply_is_lost(node.clone()).await;
    let stored = redis.load(&id.encode()).await.unwrap().unwrap();
    assert_eq!((stored.data.n, stored.version), (5, 3), "Redis");
    let cached = node.load(&id.encode()).await.unwrap().unwrap();
    assert_eq!((cached.data.n, cached.version), (5, 3), "the node's cache");
}
