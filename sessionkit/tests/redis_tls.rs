//! `rediss://`: the store talks TLS to a real `redis-server` started with a
//! certificate from a throw-away CA (made with the `openssl` command line).

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use sessionkit::expiry::ExpiryPolicy;
use sessionkit::store::redis::RedisStore;
use sessionkit::store::{Save, SaveOutcome, Store};
use sessionkit::testing::redis_server::RedisServer;
use sessionkit::{Record, SessionId};

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the openssl command line is needed: apt-get install openssl");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "1",
        "-subj",
        "/CN=sessionkit test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-subj", "/CN=localhost"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` with TLS on a port of its own (the returned URL; its
/// plain port stays open for the test's own commands), certificates from a
/// throw-away CA (returned as PEM), `extra` arguments first.
fn tls_server(certs: &Path, extra: &[&str]) -> (RedisServer, String, Vec<u8>) {
    make_certificates(certs);
    let tls_port = free_port();
    let path = |f: &str| certs.join(f).into_os_string();
    let mut args: Vec<std::ffi::OsString> = extra.iter().map(Into::into).collect();
    args.extend([
        "--tls-port".into(),
        tls_port.to_string().into(),
        "--tls-cert-file".into(),
        path("server.pem"),
        "--tls-key-file".into(),
        path("server.key"),
        "--tls-ca-cert-file".into(),
        path("ca.pem"),
        "--tls-auth-clients".into(),
        "no".into(),
    ]);
    let server = RedisServer::start_with_args(args).unwrap();
    let ca = std::fs::read(certs.join("ca.pem")).unwrap();
    (server, format!("rediss://127.0.0.1:{tls_port}/"), ca)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_over_tls_and_refuses_an_untrusted_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (server, url, ca) = tls_server(certs.path(), &[]);

    let store: RedisStore<u32> = RedisStore::builder(url.clone())
        .tls_root_certificate(ca)
        .connect()
        .await
        .expect("TLS connection with the test CA trusted");
    let r = Record::new(
        SessionId::generate(),
        7u32,
        SystemTime::now(),
        &ExpiryPolicy::default(),
    );
    let out = store.save(Save::create(&r)).await.unwrap();
    assert_eq!(out, SaveOutcome::Saved(r.id.encode()));
    assert_eq!(store.load(&r.id.encode()).await.unwrap().unwrap().data, 7);
    // The plain port of the same server sees the session: it went over TLS.
    let plain: RedisStore<u32> = RedisStore::connect(server.url()).await.unwrap();
    assert!(plain.load(&r.id.encode()).await.unwrap().is_some());

    // Without the CA the certificate is not trusted: no connection.
    let untrusted = RedisStore::<u32>::builder(url).connect().await;
    assert!(
        untrusted.is_err(),
        "connected to a server with an untrusted certificate"
    );
}

/// A Redis Cluster over TLS (one master holding every slot, cluster bus and
/// clients on TLS) with a certificate from a private CA: the cluster client
/// trusts `tls_root_certificate` as the single-node one does. It used to be
/// ignored on a cluster: no connection, whatever the CA given.
#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls_trusts_the_given_root_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (server, url, ca) = tls_server(
        certs.path(),
        &[
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--tls-cluster",
            "yes",
        ],
    );
    let reply = server.command("CLUSTER ADDSLOTSRANGE 0 16383").unwrap();
    assert!(!reply.starts_with('-'), "{reply}");
    let started = std::time::Instant::now();
    while !server
        .command("CLUSTER INFO")
        .unwrap()
        .contains("cluster_state:ok")
    {
        assert!(started.elapsed().as_secs() < 30, "cluster never became ok");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let store: RedisStore<u32> = RedisStore::cluster_builder([url.clone()])
        .tls_root_certificate(ca)
        .connect()
        .await
        .expect("TLS cluster connection with the test CA trusted");
    assert!(store.is_cluster());
    let r = Record::new(
        SessionId::generate(),
        9u32,
        SystemTime::now(),
        &ExpiryPolicy::default(),
    );
    let out = store.save(Save::create(&r)).await.unwrap();
    assert_eq!(out, SaveOutcome::Saved(r.id.encode()));
    assert_eq!(store.load(&r.id.encode()).await.unwrap().unwrap().data, 9);

    let untrusted = RedisStore::<u32>::cluster_builder([url]).connect().await;
    assert!(
        untrusted.is_err(),
        "connected to a cluster with an untrusted certificate"
    );
}

/// Whether a clustered store over a TLS store (trusting the test CA)
/// subscribes, through the TLS URL or, with `plain`, the same server's
/// plain port.
#[cfg(feature = "cluster")]
async fn tls_node_subscribes(plain: bool) -> bool {
    use sessionkit::store::cluster::{ClusterOptions, ClusteredStore};
    let certs = tempfile::tempdir().unwrap();
    let (server, url, ca) = tls_server(certs.path(), &[]);
    let store: RedisStore<u32> = RedisStore::builder(url.clone())
        .tls_root_certificate(ca)
        .connect()
        .await
        .unwrap();
    let subscribe = if plain { server.url() } else { url };
    let options = ClusterOptions::new([7u8; 32]).subscribe_wait(std::time::Duration::from_secs(10));
    let node = ClusteredStore::with_store(store, vec![subscribe], options)
        .await
        .unwrap();
    node.is_subscribed()
}

/// The clustered store's subscriber connects as the store does: with the
/// store's TLS root certificate. It used a plain client, which a server
/// under a private CA refused: the node never subscribed and served every
/// read from Redis (bypass), with a warning per retry as the only sign.
#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clustered_store_subscribes_over_tls_with_the_given_root_certificate() {
    assert!(
        tls_node_subscribes(false).await,
        "the subscription over TLS was never made"
    );
}

/// A TLS store may still be told to subscribe through a plain node (the
/// same server's plain port here): that URL gets a plain client, not a TLS
/// one that would refuse a `redis://` URL.
#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_store_can_subscribe_through_a_plain_url() {
    assert!(
        tls_node_subscribes(true).await,
        "no subscription through the plain URL"
    );
}
