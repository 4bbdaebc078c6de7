//! Fuzzes everything that opens a session cookie or a stored value:
//! `CookieStore::open` on the input as cookie text, and the sealed and plain
//! `Codec::decode`, `Codec::decode_record` (both record layouts) and
//! `Codec::decode_bytes` on the raw bytes. None of them may panic, and
//! nothing the fuzzer makes up may open under the ring's key.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sessionkit::codec::Codec;
use sessionkit::keys::{KeyPurpose, KeyRing};
use sessionkit::store::cookie::CookieStore;
use sessionkit::{Config, Record};

type Data = Vec<String>;

struct Openers {
    store: CookieStore<Data>,
    sealed: Codec,
    plain: Codec,
}

fn openers() -> &'static Openers {
    static O: OnceLock<Openers> = OnceLock::new();
    O.get_or_init(|| {
        let ring = KeyRing::builder()
            .current(1, "fuzzing secret, thirty-two bytes long")
            .previous(2, "previous fuzzing secret, 32 bytes long")
            .build()
            .expect("valid ring");
        Openers {
            store: CookieStore::new(&ring, &Config::default()),
            sealed: Codec::builder().seal(&ring, KeyPurpose::StoreData).build(),
            plain: Codec::default(),
        }
    })
}

fuzz_target!(|input: &[u8]| {
    let o = openers();
    if let Ok(text) = std::str::from_utf8(input) {
        assert!(o.store.open(text).is_none(), "forged cookie opened");
    }
    assert!(
        o.sealed.decode::<Record<Data>>(input).is_err(),
        "forged sealed value opened"
    );
    assert!(
        o.sealed.decode_record::<Data>(input).is_err(),
        "forged sealed record opened"
    );
    assert!(
        o.sealed.decode_bytes(input).is_err(),
        "forged sealed bytes opened"
    );
    let _ = o.plain.decode::<Record<Data>>(input);
    let _ = o.plain.decode_record::<Data>(input);
    let _ = o.plain.decode_bytes(input);
});
