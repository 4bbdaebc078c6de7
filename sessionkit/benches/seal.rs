//! Seal + open of one cookie value, sessionkit's codec next to the `cookie`
//! crate's private jar (AES-256-GCM), in the same run, for 100 B, 1 KB and
//! 3 KB payloads. Every side starts from a `String` and ends with it again.
//! Like for like, two pairs:
//! - raw payload: our `Codec::encode_bytes`/`decode_bytes` (`*_bytes`)
//!   against the bare jar (`cookie_private_jar`), which seals the string as
//!   it is;
//! - typed value: our `Codec::encode`/`decode` of the `String` (serde_json
//!   in and out, what the session store does) against the jar with the same
//!   serde_json step a session layer on top of it needs
//!   (`cookie_private_jar_serde_json`, what actix-session's cookie store
//!   does).
//!
//! Compression is off on our side so every side encrypts the same bytes.
//!
//! `cargo bench -p sessionkit --features cookie-store --bench seal`
//!
//! The `kdf_iterations` group shows that the PBKDF2 iteration count costs
//! nothing per request: the ring is built (and PBKDF2 run) outside the loop.
//! The `random` group compares a `getrandom` syscall per draw with the
//! fork-safe thread-local generator ids and nonces now come from.

use std::hint::black_box;
use std::time::SystemTime;

use cookie::{Cookie, CookieJar, Key};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sessionkit::codec::{Algorithm, Codec, Compression};
use sessionkit::expiry::ExpiryPolicy;
use sessionkit::keys::{KeyPurpose, KeyRing, PasswordKdf};
use sessionkit::store::cookie::CookieStore;
use sessionkit::{Config, Record, SessionId};

const SIZES: [(usize, &str); 3] = [(100, "100B"), (1024, "1KB"), (3 * 1024, "3KB")];

/// Random base64url text: incompressible enough, and nothing to escape in JSON.
fn payload(len: usize) -> String {
    let mut s = String::with_capacity(len + 43);
    while s.len() < len {
        s.push_str(&SessionId::generate().encode());
    }
    s.truncate(len);
    s
}

fn ring(kdf: Option<u32>) -> KeyRing {
    let mut b = KeyRing::builder().current(1, "benchmark secret, thirty-two bytes long");
    if let Some(iterations) = kdf {
        b = b.password_kdf(
            PasswordKdf::new(iterations, "benchmark salt 16").dangerously_few_iterations(),
        );
    }
    b.build().unwrap()
}

fn codec(ring: &KeyRing, algorithm: Algorithm) -> Codec {
    Codec::builder()
        .seal(ring, KeyPurpose::CookieSealing)
        .algorithm(algorithm)
        .context("id")
        .compression(Compression::None)
        .build()
}

/// Our side, as the cookie store does it (SIMD base64 around the codec).
fn seal_open(codec: &Codec, value: &String) -> String {
    let b64 = base64_simd::URL_SAFE_NO_PAD;
    let sealed = b64.encode_to_string(codec.encode(value).unwrap());
    let bytes = b64.decode_to_vec(black_box(&sealed)).unwrap();
    codec.decode::<String>(&bytes).unwrap()
}

/// Our side for a raw payload: the bytes API, no serde.
fn seal_open_bytes(codec: &Codec, value: &String) -> String {
    let b64 = base64_simd::URL_SAFE_NO_PAD;
    let sealed = b64.encode_to_string(codec.encode_bytes(value.as_bytes()).unwrap());
    let bytes = b64.decode_to_vec(black_box(&sealed)).unwrap();
    String::from_utf8(codec.decode_bytes(&bytes).unwrap()).unwrap()
}

fn seal_and_open(c: &mut Criterion) {
    let ring = ring(None);
    let xchacha = codec(&ring, Algorithm::XChaCha20Poly1305);
    let aes = codec(&ring, Algorithm::Aes256Gcm);
    let key = Key::generate();
    let mut group = c.benchmark_group("seal_open");
    for (len, label) in SIZES {
        let value = payload(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(
            BenchmarkId::new("sessionkit_xchacha20poly1305", label),
            &value,
            |b, v| b.iter(|| seal_open(&xchacha, v)),
        );
        group.bench_with_input(
            BenchmarkId::new("sessionkit_aes256gcm", label),
            &value,
            |b, v| b.iter(|| seal_open(&aes, v)),
        );
        group.bench_with_input(
            BenchmarkId::new("sessionkit_xchacha20poly1305_bytes", label),
            &value,
            |b, v| b.iter(|| seal_open_bytes(&xchacha, v)),
        );
        group.bench_with_input(
            BenchmarkId::new("sessionkit_aes256gcm_bytes", label),
            &value,
            |b, v| b.iter(|| seal_open_bytes(&aes, v)),
        );
        group.bench_with_input(
            BenchmarkId::new("cookie_private_jar", label),
            &value,
            |b, v| {
                b.iter(|| {
                    let mut jar = CookieJar::new();
                    jar.private_mut(&key).add(Cookie::new("id", v.clone()));
                    let sealed = jar.get("id").unwrap().value().to_owned();
                    let opened = jar
                        .private(&key)
                        .decrypt(Cookie::new("id", black_box(sealed)))
                        .unwrap();
                    opened.value().to_owned()
                })
            },
        );
        // What a session layer on the private jar does (actix-session's
        // cookie store): serde_json in and out around the jar.
        group.bench_with_input(
            BenchmarkId::new("cookie_private_jar_serde_json", label),
            &value,
            |b, v| {
                b.iter(|| {
                    let mut jar = CookieJar::new();
                    let json = serde_json::to_string(v).unwrap();
                    jar.private_mut(&key).add(Cookie::new("id", json));
                    let sealed = jar.get("id").unwrap().value().to_owned();
                    let opened = jar
                        .private(&key)
                        .decrypt(Cookie::new("id", black_box(sealed)))
                        .unwrap();
                    serde_json::from_str::<String>(opened.value()).unwrap()
                })
            },
        );
    }
    group.finish();
}

/// The whole record as the cookie store seals it (with its default gzip).
fn cookie_store_record(c: &mut Criterion) {
    let ring = ring(None);
    let config = Config::default();
    let store = CookieStore::<String>::new(&ring, &config);
    let mut group = c.benchmark_group("cookie_store_record");
    for (len, label) in SIZES {
        let record = Record::new(
            SessionId::generate(),
            payload(len),
            SystemTime::now(),
            &ExpiryPolicy::default(),
        );
        group.bench_function(label, |b| {
            b.iter(|| {
                let v = store.seal(&record).unwrap();
                store.open(black_box(&v)).unwrap()
            })
        });
    }
    group.finish();
}

fn kdf_iterations(c: &mut Criterion) {
    let value = payload(1024);
    let mut group = c.benchmark_group("kdf_iterations");
    for iterations in [1_000u32, 600_000] {
        let ring = ring(Some(iterations)); // PBKDF2 runs here, once
        let codec = codec(&ring, Algorithm::XChaCha20Poly1305);
        group.bench_with_input(
            BenchmarkId::new("seal_open_1KB", iterations),
            &value,
            |b, v| b.iter(|| seal_open(&codec, v)),
        );
    }
    group.finish();
}

/// Where ids and nonces come from: one `getrandom` syscall per draw (what
/// earlier releases paid) against the fork-safe thread-local generator now
/// behind `SessionId::generate` and every nonce (`src/rng.rs`).
fn random(c: &mut Criterion) {
    let mut group = c.benchmark_group("random");
    group.bench_function("getrandom_syscall_32B", |b| {
        let mut n = [0u8; 32];
        b.iter(|| {
            getrandom::fill(&mut n).unwrap();
            black_box(n)
        })
    });
    group.bench_function("session_id_generate_32B", |b| {
        b.iter(|| black_box(SessionId::generate()))
    });
    group.finish();
}

/// SHA-256 of a 32-byte session id (the Redis key and the cluster cache
/// key): RustCrypto's `sha2` (portable code without SHA-NI) against ring's.
fn digest_of_an_id(c: &mut Criterion) {
    use sha2::Digest;
    let mut group = c.benchmark_group("sha256_32B");
    let id = *SessionId::generate().as_bytes();
    group.bench_function("sha2", |b| {
        b.iter(|| black_box(sha2::Sha256::digest(black_box(id))))
    });
    group.bench_function("ring", |b| {
        b.iter(|| black_box(ring::digest::digest(&ring::digest::SHA256, black_box(&id))))
    });
    group.bench_function("storage_key", |b| {
        let sid = SessionId::from_bytes(id);
        b.iter(|| black_box(black_box(sid).storage_key()))
    });
    group.finish();
}

criterion_group!(
    benches,
    seal_and_open,
    cookie_store_record,
    kdf_iterations,
    random,
    digest_of_an_id
);
criterion_main!(benches);
