//! `RedisStore` with the shared codec sealing its values (the "encrypt stored
//! data" option): the conformance suite, and a dump of Redis that yields
//! neither session data nor a usable cookie.

use std::sync::OnceLock;

use sessionkit::codec::{Codec, Compression};
use sessionkit::keys::{KeyPurpose, KeyRing};
use sessionkit::store::redis::RedisStore;
use sessionkit::store::{Save, Store};
use sessionkit::testing::redis_server::RedisServer;
use sessionkit::testing::TestData;
use sessionkit::{Record, SessionId};

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::start().unwrap_or_else(|e| panic!("{e}")))
}

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        KeyRing::builder()
            .current(1, KeyRing::generate_secret())
            .build()
            .unwrap()
    })
}

fn sealed(ring: &KeyRing) -> Codec {
    Codec::builder()
        .compression(Compression::Gzip { threshold: 256 })
        .seal(ring, KeyPurpose::StoreData)
        .context("redis")
        .build()
}

async fn store_with(prefix: &str, codec: Option<Codec>) -> RedisStore<TestData> {
    let mut b = RedisStore::builder(server().url()).key_prefix(prefix);
    if let Some(c) = codec {
        b = b.codec(c);
    }
    b.connect().await.expect("connect to the test redis-server")
}

async fn fresh() -> RedisStore<TestData> {
    let prefix = format!("sealed-{}:", &SessionId::generate().storage_key()[..12]);
    store_with(&prefix, Some(sealed(ring()))).await
}

sessionkit::store_conformance_tests!(sealed_redis, fresh());
sessionkit::server_store_conformance_tests!(sealed_redis_server, fresh());
sessionkit::query_store_conformance_tests!(sealed_redis_query, fresh());

fn record() -> Record<TestData> {
    let mut r = Record::new(
        SessionId::generate(),
        TestData {
            name: Some("very-secret-name".into()),
            counter: 7,
            tags: vec![],
        },
        std::time::SystemTime::now(),
        &Default::default(),
    );
    r.owner = Some("alice@example.com".into());
    r
}

#[tokio::test]
async fn a_dump_of_sealed_values_holds_no_data_no_owner_and_no_session_id() {
    let store = store_with("dump:", Some(sealed(ring()))).await;
    let r = record();
    store.save(Save::create(&r)).await.unwrap();
    let client = redis::Client::open(server().url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(store.key_of(&r.id))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!raw.is_empty());
    for secret in [
        "very-secret-name",
        "alice@example.com",
        r.id.encode().as_str(),
    ] {
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "stored value reveals {secret}"
        );
    }
    assert_eq!(
        store
            .load(&r.id.encode())
            .await
            .unwrap()
            .unwrap()
            .data
            .counter,
        7
    );
}

#[tokio::test]
async fn values_sealed_under_another_key_or_written_plain_start_fresh() {
    let plain = store_with("mixed:", None).await;
    let r = record();
    plain.save(Save::create(&r)).await.unwrap();
    let sealed_store = store_with("mixed:", Some(sealed(ring()))).await;
    assert!(
        sealed_store.load(&r.id.encode()).await.is_err(),
        "a plain value must not be trusted"
    );

    let other = KeyRing::builder()
        .current(9, KeyRing::generate_secret())
        .build()
        .unwrap();
    let foreign = store_with("foreign:", Some(sealed(&other))).await;
    let r2 = record();
    foreign.save(Save::create(&r2)).await.unwrap();
    let ours = store_with("foreign:", Some(sealed(ring()))).await;
    assert!(
        ours.load(&r2.id.encode()).await.is_err(),
        "a value sealed under a foreign key must not open"
    );
}
