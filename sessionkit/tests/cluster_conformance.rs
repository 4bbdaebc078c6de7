//! The store conformance suite on `ClusteredStore`, and on
//! `Resilient<ClusteredStore>` (the decorators compose), against a real
//! `redis-server` this test binary starts itself (one for all cases; each
//! case gets its own key prefix and channel).

use std::sync::OnceLock;

use sessionkit::resilience::{ResilienceConfig, Resilient};
use sessionkit::store::cluster::{ClusterOptions, ClusteredStore};
use sessionkit::store::redis::RedisStore;
use sessionkit::testing::redis_server::RedisServer;
use sessionkit::testing::TestData;
use sessionkit::SessionId;

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::start().unwrap_or_else(|e| panic!("{e}")))
}

async fn fresh() -> ClusteredStore<TestData> {
    let tag = &SessionId::generate().storage_key()[..12];
    let store = RedisStore::builder(server().url())
        .key_prefix(format!("conformance-{tag}:"))
        .connect()
        .await
        .expect("connect to the test redis-server");
    let options = ClusterOptions::new([7u8; 32]).channel(format!("invalidate-{tag}"));
    let store = ClusteredStore::with_store(store, vec![server().url()], options)
        .await
        .expect("valid options");
    assert!(store.is_subscribed(), "subscribes before connect returns");
    store
}

sessionkit::store_conformance_tests!(clustered, fresh());
sessionkit::server_store_conformance_tests!(clustered_server, fresh());
sessionkit::query_store_conformance_tests!(clustered_query, fresh());

async fn resilient() -> Resilient<ClusteredStore<TestData>> {
    Resilient::new(fresh().await, ResilienceConfig::builder().build().unwrap())
}

sessionkit::store_conformance_tests!(resilient_clustered, resilient());
sessionkit::server_store_conformance_tests!(resilient_clustered_server, resilient());
sessionkit::query_store_conformance_tests!(resilient_clustered_query, resilient());
