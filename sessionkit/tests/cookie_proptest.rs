//! Property tests: the cookie opener and the codec never panic and never
//! accept anything they did not seal, whatever bytes they are given.

use std::sync::OnceLock;
use std::time::SystemTime;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;
use sessionkit::codec::Codec;
use sessionkit::expiry::ExpiryPolicy;
use sessionkit::keys::{KeyPurpose, KeyRing};
use sessionkit::store::cookie::CookieStore;
use sessionkit::{Config, Record, SessionId};

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        KeyRing::builder()
            .current(1, "proptest secret, thirty-two bytes long")
            .build()
            .unwrap()
    })
}

fn store() -> &'static CookieStore<Vec<String>> {
    static STORE: OnceLock<CookieStore<Vec<String>>> = OnceLock::new();
    STORE.get_or_init(|| CookieStore::new(ring(), &Config::default()))
}

fn sealing_codec() -> &'static Codec {
    static CODEC: OnceLock<Codec> = OnceLock::new();
    CODEC.get_or_init(|| Codec::builder().seal(ring(), KeyPurpose::StoreData).build())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn arbitrary_text_never_opens(value in any::<String>()) {
        prop_assert!(store().open(&value).is_none());
    }

    #[test]
    fn arbitrary_base64url_never_opens(value in "[A-Za-z0-9_-]{0,700}") {
        prop_assert!(store().open(&value).is_none());
    }

    #[test]
    fn arbitrary_bytes_never_decode_under_a_sealing_codec(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert!(sealing_codec().decode::<Record<Vec<String>>>(&bytes).is_err());
        prop_assert!(store().open(&URL_SAFE_NO_PAD.encode(&bytes)).is_none());
    }

    #[test]
    fn arbitrary_bytes_behind_a_plain_header_do_not_panic(
        flags in 0u8..3,
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = vec![1, 0, flags];
        bytes.extend_from_slice(&body);
        let _ = Codec::default().decode::<Record<Vec<String>>>(&bytes);
    }

    #[test]
    fn any_single_change_to_a_sealed_cookie_is_rejected(
        data in proptest::collection::vec("[a-z]{0,40}", 0..40),
        at in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let s = store();
        let record = Record::new(SessionId::generate(), data.clone(), SystemTime::now(), &ExpiryPolicy::default());
        let cookie = s.seal(&record).unwrap();
        prop_assert_eq!(s.open(&cookie).map(|r| r.data), Some(data));
        let mut raw = URL_SAFE_NO_PAD.decode(&cookie).unwrap();
        let i = at.index(raw.len());
        raw[i] ^= mask;
        prop_assert!(s.open(&URL_SAFE_NO_PAD.encode(&raw)).is_none());
    }
}
