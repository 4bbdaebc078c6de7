//! The pattern the actix-web docs recommend for Redis: one store per worker,
//! built in the app factory with `RedisStoreBuilder::build_lazy`. Two
//! workers, a real `redis-server`, a real HTTP client: every worker builds
//! its own store, and a session written through one worker is read through
//! the other (they share Redis, not memory).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use sessionkit::http::actix::SessionMiddleware;
use sessionkit::store::redis::RedisStore;
use sessionkit::testing::redis_server::RedisServer;
use sessionkit::{Config, Session, Sessions};

/// Answers the new count and the worker's thread.
async fn increment(session: Session<u64>) -> String {
    let mut n = session.data_mut();
    *n += 1;
    format!("{} {:?}", *n, std::thread::current().id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_builds_its_own_store_and_they_share_the_sessions() {
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = redis.url();
    let built = Arc::new(AtomicUsize::new(0));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let counter = built.clone();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let store = RedisStore::<u64>::builder(url.clone())
                    .build_lazy()
                    .expect("build_lazy in a worker");
                let sessions = Sessions::new(store, Config::default());
                App::new()
                    .wrap(SessionMiddleware::new(&sessions))
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
    handle.stop(false).await;
}
