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

/// The value stored for `id`, read straight from Redis.
async fn stored(store: &RedisStore<TestData>, id: &SessionId) -> Vec<u8> {
    let client = redis::Client::open(server().url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(store.key_of(id))
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dump_of_sealed_values_holds_no_data_no_owner_and_no_session_id() {
    let store = store_with("dump:", Some(sealed(ring()))).await;
    let r = record();
    store.save(Save::create(&r)).await.unwrap();
    let raw = stored(&store, &r.id).await;
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

/// A codec that only compresses (no sealing) stores the data readably, but
/// names the session by its handle: the dump holds no session id, raw or as
/// a cookie, compressed or not. The listing still names it, and the value
/// loads by its cookie.
#[tokio::test]
async fn a_dump_of_compressed_only_values_holds_no_session_id() {
    for threshold in [0, 1 << 20] {
        let codec = Codec::builder()
            .compression(Compression::Gzip { threshold })
            .build();
        assert!(!codec.is_sealed());
        let prefix = format!("zip-{}:", &SessionId::generate().storage_key()[..12]);
        let store = store_with(&prefix, Some(codec)).await;
        let r = record();
        store.save(Save::create(&r)).await.unwrap();
        let raw = stored(&store, &r.id).await;
        // Gunzipped where compressed: the id must not be in the plain bytes.
        let mut plain = raw.clone();
        if let Some(at) = raw.windows(2).position(|w| w == [0x1f, 0x8b]) {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[at..])
                .read_to_end(&mut out)
                .unwrap();
            plain.extend_from_slice(&out);
        }
        if threshold > 0 {
            assert!(
                plain.windows(16).any(|w| w == b"very-secret-name"),
                "the check reads the data (threshold {threshold})"
            );
        }
        let encoded = r.id.encode();
        assert!(!plain.windows(32).any(|w| w == r.id.as_bytes()));
        assert!(!plain
            .windows(encoded.len())
            .any(|w| w == encoded.as_bytes()));
        let listed = sessionkit::QueryStore::by_owner(&store, "alice@example.com")
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, r.id.handle());
        assert_eq!(store.load(&encoded).await.unwrap().unwrap().data.counter, 7);
    }
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
