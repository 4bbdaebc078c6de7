//! Three axum apps on three real sockets, each with its own `Sessions` over
//! its own `ClusteredStore` (own connections, own cache), sharing one real
//! `redis-server` started by this test: the cookie issued by one works on
//! all; a logout or a revoke on one kills it on all, and how long that took
//! is printed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::Router;
use reqwest::header::{COOKIE, SET_COOKIE};
use sessionkit::store::cluster::{ClusterOptions, ClusteredStore};
use sessionkit::testing::redis_server::RedisServer;
use sessionkit::{Config, Session, SessionLayer, Sessions};

#[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
struct User {
    name: Option<String>,
}

type Store = ClusteredStore<User>;

async fn login(s: Session<User>, Path(name): Path<String>) -> &'static str {
    s.regenerate_id();
    s.set_owner(Some(name.clone()));
    s.data_mut().name = Some(name);
    "welcome"
}

async fn me(s: Session<User>) -> String {
    s.data().name.clone().unwrap_or_else(|| "anonymous".into())
}

async fn logout(s: Session<User>) -> &'static str {
    s.destroy();
    "bye"
}

async fn revoke(State(sessions): State<Sessions<User, Store>>, Path(name): Path<String>) -> String {
    sessions.revoke_owner(&name).await.unwrap().to_string()
}

async fn start(server: &RedisServer) -> SocketAddr {
    let store = ClusteredStore::connect(&server.url(), ClusterOptions::new([3u8; 32]))
        .await
        .unwrap();
    let config = Config::builder()
        .dangerously_allow_insecure_http()
        .build()
        .unwrap();
    let sessions = Sessions::new(store, config);
    let app = Router::new()
        .route("/login/{name}", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/revoke/{name}", post(revoke))
        .with_state(sessions.clone())
        .layer(SessionLayer::new(&sessions));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    addr: SocketAddr,
    path: &str,
    cookie: Option<&str>,
) -> (String, Option<String>) {
    let mut req = http.request(method, format!("http://{addr}{path}"));
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    let set = resp
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    (resp.text().await.unwrap(), set)
}

async fn who(http: &reqwest::Client, addr: SocketAddr, cookie: &str) -> String {
    call(http, reqwest::Method::GET, addr, "/me", Some(cookie))
        .await
        .0
}

/// Waits until every app answers "anonymous" to the cookie; the time it took.
async fn until_rejected(http: &reqwest::Client, apps: &[SocketAddr], cookie: &str) -> Duration {
    let start = Instant::now();
    for &app in apps {
        while who(http, app, cookie).await != "anonymous" {
            assert!(start.elapsed() < Duration::from_secs(1), "still accepted");
        }
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cookie_works_on_every_app_and_a_logout_or_revoke_on_one_kills_it_on_all() {
    let server = RedisServer::start().unwrap();
    let (a, b, c) = (
        start(&server).await,
        start(&server).await,
        start(&server).await,
    );
    let http = reqwest::Client::new();
    let post = reqwest::Method::POST;

    // Log in through A; read through A, B and C (warming every cache).
    let (_, cookie) = call(&http, post.clone(), a, "/login/alice", None).await;
    let cookie = cookie.expect("login sets a cookie");
    for app in [a, b, c] {
        assert_eq!(who(&http, app, &cookie).await, "alice");
        assert_eq!(who(&http, app, &cookie).await, "alice");
    }
    // Log out through C: A and B reject the cookie.
    call(&http, post.clone(), c, "/logout", Some(&cookie)).await;
    let took = until_rejected(&http, &[a, b], &cookie).await;
    println!("logout on C: A and B answered anonymous after {took:?} (including the requests)");

    // Two logins of bob, read everywhere; revoke through B kills both on all.
    let (_, bob1) = call(&http, post.clone(), a, "/login/bob", None).await;
    let (_, bob2) = call(&http, post.clone(), c, "/login/bob", None).await;
    let (bob1, bob2) = (bob1.unwrap(), bob2.unwrap());
    for app in [a, b, c] {
        assert_eq!(who(&http, app, &bob1).await, "bob");
        assert_eq!(who(&http, app, &bob2).await, "bob");
    }
    let (revoked, _) = call(&http, post.clone(), b, "/revoke/bob", None).await;
    assert_eq!(revoked, "2");
    until_rejected(&http, &[a, b, c], &bob1).await;
    until_rejected(&http, &[a, b, c], &bob2).await;
}
