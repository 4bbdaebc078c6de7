//! The store conformance suite on `RedisStore`, against a real `redis-server`
//! this test binary starts itself (one for all cases; each case gets its own
//! key prefix, so counts and scans see only that case's sessions).

use std::sync::OnceLock;

use sessionkit::store::redis::RedisStore;
use sessionkit::testing::redis_server::RedisServer;
use sessionkit::testing::TestData;
use sessionkit::SessionId;

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::start().unwrap_or_else(|e| panic!("{e}")))
}

async fn fresh() -> RedisStore<TestData> {
    let prefix = format!(
        "conformance-{}:",
        &SessionId::generate().storage_key()[..12]
    );
    RedisStore::builder(server().url())
        .key_prefix(prefix)
        .connect()
        .await
        .expect("connect to the test redis-server")
}

sessionkit::store_conformance_tests!(redis, fresh());
sessionkit::server_store_conformance_tests!(redis_server, fresh());
sessionkit::query_store_conformance_tests!(redis_query, fresh());
