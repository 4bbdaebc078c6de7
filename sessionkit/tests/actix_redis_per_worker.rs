//! Redis stores on several actix-web workers: one store per worker, built in
//! the app factory with `RedisStoreBuilder::build_lazy` (or
//! `ClusteredStore::connect_lazy`), and one store cloned into every worker
//! (which opens a connection per worker's runtime). Two workers, a real `redis-server`, a
//! real HTTP client: every worker builds its own store, and a session written
//! through one worker is read through the other (they share Redis, not
//! memory; clustered stores each keep a cache that the other worker's
//! invalidations must reach).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use sessionkit::http::actix::SessionMiddleware;
use sessionkit::store::redis::RedisStore;
use sessionkit::testing::redis_server::RedisServer;
use sessionkit::{Config, Session, Sessions, Store};

/// Answers the new count and the worker's thread.
async fn increment(session: Session<u64>) -> String {
    let mut n = session.data_mut();
    *n += 1;
    format!("{} {:?}", *n, std::thread::current().id())
}

/// Serves `/` (increment) on two actix-web workers, each building its
/// sessions with `sessions` in the app factory, and checks that one counter
/// goes 1..=20 across both workers, each of which built one store. `pause`
/// between requests: a clustered node may serve its cached copy until the
/// other node's invalidation has reached it (one pub/sub delivery, measured
/// in `cluster_invalidation.rs` at 17 ms in the worst case on a loaded
/// machine), a window this test is not about. The server is left running
/// (its workers' connections open) for the caller to stop.
async fn one_counter_across_two_workers<S, F>(
    sessions: F,
    pause: std::time::Duration,
) -> actix_web::dev::ServerHandle
where
    S: Store<u64>,
    F: Fn() -> Sessions<u64, S> + Clone + Send + 'static,
{
    let built = Arc::new(AtomicUsize::new(0));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let counter = built.clone();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                App::new()
                    .wrap(SessionMiddleware::new(&sessions()))
                    .route("/", web::get().to(increment))
            })
            .workers(2)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
            tx.send(server.handle()).unwrap();
            server.await
        })
    });
    let handle = rx.recv().unwrap();
    // A new connection per request: the two workers take turns accepting.
    let get = |cookie: Option<String>| {
        let url = format!("http://{addr}/");
        async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let mut req = client.get(url);
            if let Some(c) = cookie {
                req = req.header(reqwest::header::COOKIE, c);
            }
            let resp = req.send().await.expect("request");
            let set = resp
                .headers()
                .get(reqwest::header::SET_COOKIE)
                .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
            (set, resp.text().await.unwrap())
        }
    };
    let mut threads = std::collections::HashSet::new();
    let (set, body) = get(None).await;
    let (count, thread) = body.split_once(' ').unwrap();
    assert_eq!(count, "1");
    threads.insert(thread.to_owned());
    let cookie = set.expect("a new session sets its cookie");
    for expected in 2..=20u64 {
        tokio::time::sleep(pause).await;
        let (_, body) = get(Some(cookie.clone())).await;
        let (count, thread) = body.split_once(' ').unwrap();
        assert_eq!(
            count,
            expected.to_string(),
            "one counter across both workers"
        );
        threads.insert(thread.to_owned());
    }
    assert_eq!(built.load(Ordering::SeqCst), 2, "one store per worker");
    assert_eq!(
        threads.len(),
        2,
        "both workers served the session: {threads:?}"
    );
    handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_builds_its_own_store_and_they_share_the_sessions() {
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = redis.url();
    let built = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stores = built.clone();
    let server = one_counter_across_two_workers(
        move || {
            let store = RedisStore::<u64>::builder(url.clone())
                .build_lazy()
                .expect("build_lazy in a worker");
            stores.lock().unwrap().push(store.clone());
            Sessions::new(store, Config::default())
        },
        std::time::Duration::ZERO,
    )
    .await;
    assert_eq!(store_clients(&redis), 2, "one connection per worker");
    let connections = |stores: &[RedisStore<u64>]| -> Vec<usize> {
        stores.iter().map(RedisStore::connections).collect()
    };
    let stores = built.lock().unwrap().clone();
    assert_eq!(
        connections(&stores),
        [1, 1],
        "a store per worker stays on its worker's runtime"
    );
    server.stop(false).await;
    eventually("the workers' runtimes shut down", || {
        connections(&stores) == [0, 0]
    })
    .await;
}

/// The client connections Redis has open, but the one this asks on.
fn store_clients(redis: &RedisServer) -> usize {
    let list = redis
        .command("CLIENT LIST")
        .unwrap_or_else(|e| panic!("{e}"));
    list.lines()
        .filter(|l| l.contains("cmd=") && !l.contains("cmd=client|list"))
        .count()
}

/// One store, connected before the server starts, cloned into both
/// workers: it works (one counter across both), and each worker's runtime
/// gets a connection of its own, made by its first command, so no worker's
/// commands cross to another thread's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_store_shared_by_both_workers_opens_a_connection_on_each() {
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let store = RedisStore::<u64>::connect(redis.url())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.connections(), 1, "the test's runtime");
    assert_eq!(store_clients(&redis), 1);
    let shared = store.clone();
    let server = one_counter_across_two_workers(
        move || Sessions::new(shared.clone(), Config::default()),
        std::time::Duration::ZERO,
    )
    .await;
    assert_eq!(store_clients(&redis), 3, "Redis sees the three");
    assert_eq!(
        store.connections(),
        3,
        "the test's runtime and one per worker"
    );
    server.stop(false).await;
    eventually("the workers' connections go with their runtimes", || {
        store.connections() == 1 && store_clients(&redis) == 1
    })
    .await;
}

/// Waits up to 5 s for `done` (threads finishing, sockets closing).
async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("not within 5 s: {what}");
}

/// The same with a clustered store per worker, built from one set of
/// options cloned into the factory: each worker is its own node (its own
/// id), so an update through one worker evicts the other's cached copy and
/// the counter never goes back. (Were the ids shared, each worker would skip
/// the other's invalidations as its own and serve its stale copy until the
/// cache TTL, 30 s: the count would repeat.)
#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_builds_its_own_clustered_store_and_hears_the_other() {
    use sessionkit::store::cluster::{ClusterOptions, ClusteredStore};
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = redis.url();
    let options = ClusterOptions::new([5u8; 32]);
    let server = one_counter_across_two_workers(
        move || {
            let store = ClusteredStore::<u64>::connect_lazy(&url, options.clone())
                .expect("connect_lazy in a worker");
            Sessions::new(store, Config::default())
        },
        std::time::Duration::from_millis(200),
    )
    .await;
    server.stop(false).await;
}
