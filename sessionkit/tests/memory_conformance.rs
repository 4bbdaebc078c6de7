//! The store conformance suite on `MemoryStore`.

use sessionkit::store::memory::MemoryStore;
use sessionkit::testing::TestData;

async fn fresh() -> MemoryStore<TestData> {
    MemoryStore::new()
}

sessionkit::store_conformance_tests!(memory, fresh());
sessionkit::server_store_conformance_tests!(memory_server, fresh());
sessionkit::query_store_conformance_tests!(memory_query, fresh());
