//! `Resilient<MemoryStore>` passes the whole store conformance suite: the
//! decorator changes nothing a store promises.

use sessionkit::resilience::{ResilienceConfig, Resilient};
use sessionkit::store::memory::MemoryStore;
use sessionkit::testing::TestData;

async fn fresh() -> Resilient<MemoryStore<TestData>> {
    Resilient::new(MemoryStore::new(), ResilienceConfig::default())
}

sessionkit::store_conformance_tests!(resilient, fresh());
sessionkit::server_store_conformance_tests!(resilient_server, fresh());
sessionkit::query_store_conformance_tests!(resilient_query, fresh());
