//! Client binding through a real server: a session presented from another IP
//! or User-Agent yields a fresh session, fires `on_binding_mismatch`, and is
//! destroyed when so configured. Forwarding headers count only from trusted proxies.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use sessionkit::store::memory::MemoryStore;
use sessionkit::{BindingKey, Config, ConfigBuilder, EventKind, Session, SessionLayer, Sessions};

type Data = u32;

async fn bump(s: Session<Data>) -> String {
    let mut d = s.data_mut();
    *d += 1;
    d.to_string()
}

async fn read(s: Session<Data>) -> String {
    s.data().to_string()
}

struct Server {
    base: String,
    mismatches: Arc<AtomicUsize>,
    client: reqwest::Client,
}

async fn serve(configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Server {
    let mismatches = Arc::new(AtomicUsize::new(0));
    let m = mismatches.clone();
    let builder = Config::builder()
        .binding_key(BindingKey::new([42u8; 32]))
        .on_binding_mismatch(move |e| {
            assert_eq!(e.kind, EventKind::BindingMismatch);
            m.fetch_add(1, Ordering::SeqCst);
        });
    let sessions = Sessions::new(
        MemoryStore::<Data>::new(),
        configure(builder).build().unwrap(),
    );
    let app = Router::new()
        .route("/bump", post(bump))
        .route("/read", get(read))
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
    Server {
        base: format!("http://{addr}"),
        mismatches,
        client: reqwest::Client::new(),
    }
}

impl Server {
    /// One request as a client at `ip` with `ua`, sending `cookie`; returns (body, Set-Cookie value).
    async fn call(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        ip: &str,
        ua: &str,
    ) -> (String, Option<String>) {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("x-forwarded-for", ip)
            .header("user-agent", ua);
        if let Some(c) = cookie {
            req = req.header("cookie", format!("__Host-id={c}"));
        }
        let resp = req.send().await.unwrap();
        assert!(resp.status().is_success(), "status {}", resp.status());
        let set = resp.headers().get("set-cookie").map(|v| {
            let v = v.to_str().unwrap();
            v["__Host-id=".len()..v.find(';').unwrap()].to_owned()
        });
        (resp.text().await.unwrap(), set)
    }
}

#[tokio::test]
async fn a_session_moved_to_another_ip_is_not_served_there() {
    let srv = serve(|b| b.bind_to_ip(true).trusted_proxies(["127.0.0.1"])).await;
    let (_, cookie) = srv.call("POST", "/bump", None, "203.0.113.1", "A").await;
    let cookie = cookie.unwrap();
    srv.call("POST", "/bump", Some(&cookie), "203.0.113.1", "A")
        .await;
    let (stolen, _) = srv
        .call("GET", "/read", Some(&cookie), "198.51.100.9", "A")
        .await;
    assert_eq!(stolen, "0", "another IP must get a fresh session");
    assert_eq!(srv.mismatches.load(Ordering::SeqCst), 1);
    let (owner, _) = srv
        .call("GET", "/read", Some(&cookie), "203.0.113.1", "A")
        .await;
    assert_eq!(owner, "2", "the rightful client keeps its session");
}

#[tokio::test]
async fn a_session_moved_to_another_user_agent_is_not_served_there() {
    let srv = serve(|b| b.bind_to_user_agent(true)).await;
    let (_, cookie) = srv.call("POST", "/bump", None, "1.1.1.1", "Firefox").await;
    let cookie = cookie.unwrap();
    let (other, _) = srv
        .call("GET", "/read", Some(&cookie), "1.1.1.1", "curl")
        .await;
    assert_eq!(other, "0");
    // IP is not bound here: a new address with the same browser is fine.
    let (same, _) = srv
        .call("GET", "/read", Some(&cookie), "2.2.2.2", "Firefox")
        .await;
    assert_eq!(same, "1");
}

#[tokio::test]
async fn destroy_on_mismatch_kills_the_original_session() {
    let srv = serve(|b| {
        b.bind_to_ip(true)
            .trusted_proxies(["127.0.0.1"])
            .destroy_on_binding_mismatch(true)
    })
    .await;
    let (_, cookie) = srv.call("POST", "/bump", None, "203.0.113.1", "A").await;
    let cookie = cookie.unwrap();
    srv.call("GET", "/read", Some(&cookie), "198.51.100.9", "A")
        .await;
    let (owner, _) = srv
        .call("GET", "/read", Some(&cookie), "203.0.113.1", "A")
        .await;
    assert_eq!(owner, "0", "the hijacked session must be gone for everyone");
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    // No trusted proxy: the socket address (127.0.0.1) is the client, whatever
    // X-Forwarded-For claims, so a forged header neither breaks nor forges binding.
    let srv = serve(|b| b.bind_to_ip(true)).await;
    let (_, cookie) = srv.call("POST", "/bump", None, "203.0.113.1", "A").await;
    let cookie = cookie.unwrap();
    let (same, _) = srv
        .call("GET", "/read", Some(&cookie), "198.51.100.9", "A")
        .await;
    assert_eq!(same, "1");
    assert_eq!(srv.mismatches.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_stolen_cookie_with_a_forged_forwarded_header_is_not_served() {
    // The trusted proxy (127.0.0.1 here) appends the thief's real address to
    // X-Forwarded-For and passes the thief's own `Forwarded` header through,
    // as nginx and most load balancers do. Only X-Forwarded-For counts.
    let srv = serve(|b| b.bind_to_ip(true).trusted_proxies(["127.0.0.1"])).await;
    let (_, cookie) = srv.call("POST", "/bump", None, "203.0.113.1", "A").await;
    let cookie = cookie.unwrap();
    let stolen = srv
        .client
        .get(format!("{}/read", srv.base))
        .header("forwarded", "for=203.0.113.1")
        .header("x-forwarded-for", "198.51.100.9")
        .header("user-agent", "A")
        .header("cookie", format!("__Host-id={cookie}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        stolen, "0",
        "a forged Forwarded header must not pass binding"
    );
    assert_eq!(srv.mismatches.load(Ordering::SeqCst), 1);

    // Behind proxies that write `Forwarded`, X-Forwarded-For is the forgeable one.
    let srv = serve(|b| {
        b.bind_to_ip(true)
            .trusted_proxies(["127.0.0.1"])
            .proxy_header(sessionkit::binding::ProxyHeader::Forwarded)
    })
    .await;
    let made = srv
        .client
        .post(format!("{}/bump", srv.base))
        .header("forwarded", "for=203.0.113.1")
        .send()
        .await
        .unwrap();
    let set = made.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = &set[..set.find(';').unwrap()];
    let read_as = |forwarded: &'static str, xff: &'static str| {
        srv.client
            .get(format!("{}/read", srv.base))
            .header("forwarded", forwarded)
            .header("x-forwarded-for", xff)
            .header("cookie", cookie)
            .send()
    };
    let stolen = read_as("for=198.51.100.9", "203.0.113.1").await.unwrap();
    assert_eq!(stolen.text().await.unwrap(), "0");
    let owner = read_as("for=203.0.113.1", "198.51.100.9").await.unwrap();
    assert_eq!(owner.text().await.unwrap(), "1");
}

#[cfg(feature = "crypto")]
#[tokio::test]
async fn a_binding_key_rotation_keeps_bound_sessions_for_their_client_only() {
    use sessionkit::binding::ClientInfo;
    use sessionkit::keys::KeyRing;
    let old_secret = KeyRing::generate_secret();
    let new_secret = KeyRing::generate_secret();
    let before = KeyRing::builder().current(1, &old_secret).build().unwrap();
    let after = KeyRing::builder()
        .current(2, &new_secret)
        .previous(1, &old_secret)
        .build()
        .unwrap();
    let store = MemoryStore::<Data>::new();
    let config = |ring: &KeyRing| {
        Config::builder()
            .bind_to_user_agent(true)
            .binding_key(BindingKey::from_key_ring(ring))
            .build()
            .unwrap()
    };
    let alice = ClientInfo {
        ip: None,
        user_agent: Some(b"alice-browser".to_vec()),
    };
    let mallory = ClientInfo {
        ip: None,
        user_agent: Some(b"curl".to_vec()),
    };

    let sessions = Sessions::new(store.clone(), config(&before));
    let s = sessions.load_for(None, &alice).await.unwrap();
    *s.data_mut() = 9;
    let cookie = sessions
        .commit(&s, None)
        .await
        .unwrap()
        .value()
        .unwrap()
        .to_owned();

    let rotated = Sessions::new(store, config(&after));
    let s = rotated.load_for(Some(&cookie), &alice).await.unwrap();
    assert_eq!(
        *s.data(),
        9,
        "bound under the previous key, still the same client"
    );
    let s = rotated.load_for(Some(&cookie), &mallory).await.unwrap();
    assert_eq!(
        *s.data(),
        0,
        "another client must not get it after the rotation either"
    );
}
