//! The store conformance suite (every-store cases) on `CookieStore`.
//! The server-side and query suites do not apply: a cookie store keeps
//! nothing server-side and cannot list sessions.

use sessionkit::keys::KeyRing;
use sessionkit::store::cookie::CookieStore;
use sessionkit::testing::TestData;
use sessionkit::Config;

async fn fresh() -> CookieStore<TestData> {
    let ring = KeyRing::builder()
        .current(1, KeyRing::generate_secret())
        .build()
        .unwrap();
    CookieStore::new(&ring, &Config::default())
}

sessionkit::store_conformance_tests!(cookie, fresh());

async fn cached() -> CookieStore<TestData> {
    let ring = KeyRing::builder()
        .current(1, KeyRing::generate_secret())
        .build()
        .unwrap();
    let config = Config::default();
    CookieStore::builder(&ring, &config)
        .opened_cache(64)
        .build()
}

sessionkit::store_conformance_tests!(cookie_with_opened_cache, cached());
