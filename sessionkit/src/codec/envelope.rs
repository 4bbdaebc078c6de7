//! The sealed envelope: AEAD over a small versioned header.
//!
//! ```text
//! byte  0      version (1)
//! byte  1      algorithm (1 = XChaCha20-Poly1305, 2 = AES-256-GCM)
//! bytes 2..4   key id, big-endian
//! byte  4      flags (bit 0: the plaintext is gzip-compressed; bit 1: it is a
//!              session record in the compact layout; bit 2: it is raw bytes
//!              from `Codec::encode_bytes`; other bits must be 0)
//! then         nonce (24 bytes for XChaCha20-Poly1305, 12 for AES-256-GCM)
//! then         ciphertext, then the 16-byte tag
//! ```
//!
//! The associated data is `SHA-256("sessionkit\0" ‖ purpose label ‖ 0x00 ‖
//! len(context) as 8 bytes big-endian ‖ context) ‖ header` (the digest is
//! computed once):
//! a value sealed for one purpose or context (a cookie name) does not open
//! under another, and the header (version, algorithm, key id, flags) cannot
//! be changed without the tag failing. The algorithm must be the one the
//! opener is configured with: a value cannot ask to be opened another way.
//!
//! The AEAD comes from `ring` (BoringSSL's assembly: AES-256-GCM and
//! ChaCha20-Poly1305) with HChaCha20 from RustCrypto's `chacha20` for the
//! XChaCha20 subkey; nothing cryptographic is written here. The output is
//! byte-identical to RustCrypto's `XChaCha20Poly1305` / `Aes256Gcm` (what
//! this module used before; kept as dev-dependencies to prove it, see
//! `tests::*rustcrypto*`), so values sealed earlier still open.
//!
//! Why not RustCrypto's AEADs: on the benchmark machine (x86-64 with AVX2,
//! AVX-512, VAES, VPCLMULQDQ) its `poly1305` AVX2 path had a fixed cost of
//! about 3 µs per message, which made sealing a cookie 1.4–3× slower than
//! the `cookie` crate's private jar (`benches/seal.rs`). Measured there, AEAD
//! alone, seal + open: XChaCha20-Poly1305 5.4 µs (RustCrypto) against 1.0 µs
//! (HChaCha20 + ring) at 100 bytes, 11.6 against 4.3 µs at 3 KB; AES-256-GCM
//! 0.68 against 0.37 µs at 100 bytes, 6.2 against 1.0 µs at 3 KB.

use chacha20::cipher::consts::U10;
use chacha20::hchacha;
use ring::aead::{
    Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM, CHACHA20_POLY1305, NONCE_LEN,
};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::keys::{KeyId, KeyPurpose, KeyRing};

/// The envelope format version written by this release.
pub const VERSION: u8 = 1;
/// Header length in bytes (version, algorithm, key id, flags).
pub const HEADER_LEN: usize = 5;
/// Tag length in bytes (both algorithms).
pub const TAG_LEN: usize = 16;
/// Flag: the plaintext was gzip-compressed before sealing.
pub const FLAG_GZIP: u8 = 0b0000_0001;
/// Flag: the plaintext is a session record in the compact layout
/// ([`Codec::encode_record`](super::Codec::encode_record)), not plain JSON.
pub const FLAG_RECORD: u8 = 0b0000_0010;
/// Flag: the plaintext is raw bytes
/// ([`Codec::encode_bytes`](super::Codec::encode_bytes)), not serialized data.
pub const FLAG_BYTES: u8 = 0b0000_0100;
pub(crate) const KNOWN_FLAGS: u8 = FLAG_GZIP | FLAG_RECORD | FLAG_BYTES;

/// The AEAD that seals values.
///
/// # Nonce limits
/// Nonces are random for both algorithms (no counter to keep in sync across
/// processes).
/// - **XChaCha20-Poly1305** (default): 192-bit random nonces; collisions are
///   negligible for any number of messages a deployment will ever seal, so a
///   key has no practical message budget.
/// - **AES-256-GCM**: 96-bit random nonces; NIST SP 800-38D limits a key to
///   2³² messages with random nonces (collision risk 2⁻³²). Count every
///   sealed value of every node (each cookie write is one). Rotating the key
///   ([`crate::keys`]) starts a fresh budget. Choose it when AES hardware
///   support matters more to you than that bookkeeping. How much it buys:
///   on an x86-64 server with AES-NI, a cookie store request ran 2–4k
///   fewer instructions than with the default (about 0.8k per seal or open
///   against 2.7k), which in the repository's load benchmark was inside the
///   noise of a whole request (BENCHMARKS.md, "The cookie store with
///   AES-256-GCM, in load").
///
/// # Changing it
/// The algorithm is recorded in every sealed value and must match to open
/// it: unlike a key rotation, switching algorithms has no overlap, so every
/// sealed cookie (and sealed Redis value) stops opening at once and its
/// session starts afresh. Switch when logging everyone out is acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// XChaCha20-Poly1305 (the default).
    #[default]
    XChaCha20Poly1305,
    /// AES-256-GCM.
    Aes256Gcm,
}

impl Algorithm {
    fn code(self) -> u8 {
        match self {
            Algorithm::XChaCha20Poly1305 => 1,
            Algorithm::Aes256Gcm => 2,
        }
    }

    /// Nonce length in bytes.
    pub fn nonce_len(self) -> usize {
        match self {
            Algorithm::XChaCha20Poly1305 => 24,
            Algorithm::Aes256Gcm => 12,
        }
    }

    /// Bytes an envelope adds to its plaintext.
    pub fn overhead(self) -> usize {
        HEADER_LEN + self.nonce_len() + TAG_LEN
    }
}

/// An AEAD ready to seal with one key.
///
/// Key material: the 32 bytes we own (the XChaCha20 key, the per-message
/// HChaCha20 subkey) are zeroized; the [`SubKey`](crate::keys::SubKey) bytes
/// themselves are zeroized by the [`KeyRing`]. ring keeps its own copy in
/// each key (the AES round keys, the ChaCha20 key) and has no zeroize;
/// [`wipe`] overwrites those copies in place when we are done with them (on
/// drop for AES, after each message for the XChaCha20 subkey).
enum Cipher {
    /// XChaCha20-Poly1305 as in draft-irtf-cfrg-xchacha-03 §2.3
    /// (<https://datatracker.ietf.org/doc/html/draft-irtf-cfrg-xchacha-03>):
    /// per message, subkey = HChaCha20(key, nonce[0..16]), then the IETF
    /// ChaCha20-Poly1305 of RFC 8439 (ring's `CHACHA20_POLY1305`) under the
    /// subkey with nonce = 0⁴ ‖ nonce[16..24].
    XChaCha(Zeroizing<[u8; 32]>),
    /// AES-256-GCM, key schedule built once (boxed: it is 544 bytes).
    Aes(Box<LessSafeKey>),
}

/// Overwrites a ring key in place with the same algorithm's key built from
/// 32 zero bytes. ring offers no zeroize, but its keys hold their material
/// inline (round keys, key words), so assigning over the same memory
/// replaces the secret bytes; `black_box` keeps the compiler from treating
/// the store as dead because the memory is freed or reused next. Best
/// effort, as any wipe without `volatile` access to the key's own fields.
fn wipe(key: &mut LessSafeKey) {
    let algorithm = key.algorithm();
    *key = LessSafeKey::new(UnboundKey::new(algorithm, &[0u8; 32]).expect("a 32-byte key"));
    std::hint::black_box(&*key);
}

impl Drop for Cipher {
    fn drop(&mut self) {
        if let Cipher::Aes(key) = self {
            wipe(key);
        }
    }
}

impl Cipher {
    fn new(algorithm: Algorithm, k: &[u8; 32]) -> Self {
        match algorithm {
            Algorithm::XChaCha20Poly1305 => Cipher::XChaCha(Zeroizing::new(*k)),
            Algorithm::Aes256Gcm => Cipher::Aes(Box::new(LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, k).expect("a 32-byte AES-256 key"),
            ))),
        }
    }

    /// The ring key and 96-bit nonce for one message with `nonce` (24 bytes
    /// for XChaCha20-Poly1305, 12 for AES-256-GCM; the caller checked the
    /// length). `f` runs with a borrowed key, so the XChaCha20 subkey never
    /// leaves this function.
    fn with_key<R>(&self, nonce: &[u8], f: impl FnOnce(&LessSafeKey, Nonce) -> R) -> R {
        match self {
            Cipher::XChaCha(key) => {
                let mut sub = hchacha::<U10>(key[..].into(), nonce[..16].into());
                let mut sub_bytes = Zeroizing::new([0u8; 32]);
                sub_bytes.copy_from_slice(&sub);
                sub.as_mut_slice().zeroize();
                let mut ring_key = LessSafeKey::new(
                    UnboundKey::new(&CHACHA20_POLY1305, &sub_bytes[..])
                        .expect("a 32-byte ChaCha20 key"),
                );
                let mut n = [0u8; NONCE_LEN];
                n[4..].copy_from_slice(&nonce[16..24]);
                let result = f(&ring_key, Nonce::assume_unique_for_key(n));
                wipe(&mut ring_key);
                result
            }
            Cipher::Aes(key) => f(
                key,
                Nonce::try_assume_unique_for_key(nonce).expect("a 12-byte AES-GCM nonce"),
            ),
        }
    }

    fn encrypt(&self, nonce: &[u8], ad: &[u8], buf: &mut [u8]) -> Option<[u8; TAG_LEN]> {
        let tag = self
            .with_key(nonce, |key, n| {
                key.seal_in_place_separate_tag(n, Aad::from(ad), buf)
            })
            .ok()?;
        tag.as_ref().try_into().ok()
    }

    fn decrypt(&self, nonce: &[u8], ad: &[u8], buf: &mut [u8], tag: &[u8]) -> bool {
        let Ok(tag) = Tag::try_from(tag) else {
            return false;
        };
        self.with_key(nonce, |key, n| {
            key.open_in_place_separate_tag(n, Aad::from(ad), tag, buf, 0..)
                .is_ok()
        })
    }
}

/// What [`Sealer::open`] recovered: the plaintext is `buf[range]`, decrypted
/// in place (no copy).
pub(crate) struct Opened {
    pub flags: u8,
    pub key_id: KeyId,
    pub buf: Vec<u8>,
    pub range: std::ops::Range<usize>,
}

/// Associated data: a digest of the constant part, then the header. Fixed
/// size, so it lives on the stack.
type Ad = [u8; 32 + HEADER_LEN];

/// Seals and opens envelopes for one purpose and context with every key of
/// a ring. The cipher instances (and AES key schedules) are built once here.
pub(crate) struct Sealer {
    algorithm: Algorithm,
    /// SHA-256 of `"sessionkit\0" ‖ purpose label ‖ 0 ‖ len(context) ‖ context`.
    ad_prefix: [u8; 32],
    /// Current key first.
    keys: Vec<(KeyId, Cipher)>,
}

impl Sealer {
    pub fn new(ring: &KeyRing, purpose: KeyPurpose, algorithm: Algorithm, context: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"sessionkit\0");
        h.update(purpose.label().as_bytes());
        h.update([0]);
        // Length-prefixed, so no (label, context) pair can mimic another.
        h.update((context.len() as u64).to_be_bytes());
        h.update(context);
        let keys = ring
            .subkeys(purpose)
            .map(|(id, key)| (id, Cipher::new(algorithm, key.expose_secret())))
            .collect();
        Sealer {
            algorithm,
            ad_prefix: h.finalize().into(),
            keys,
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    fn ad(&self, header: &[u8]) -> Ad {
        let mut ad = [0u8; 32 + HEADER_LEN];
        ad[..32].copy_from_slice(&self.ad_prefix);
        ad[32..].copy_from_slice(header);
        ad
    }

    /// Bytes to reserve in front of the plaintext (header and nonce), so
    /// callers can serialize straight into the buffer they then seal.
    pub fn prefix_len(&self) -> usize {
        HEADER_LEN + self.algorithm.nonce_len()
    }

    /// Seals `buf[prefix_len()..]` in place with the current key: writes the
    /// header and a random nonce into the reserved prefix, appends the tag.
    /// `None` only if the AEAD refuses the length (gigabytes).
    pub fn seal_in_place(&self, flags: u8, mut buf: Vec<u8>) -> Option<Vec<u8>> {
        let (id, cipher) = &self.keys[0];
        let start = self.prefix_len();
        if buf.len() < start {
            return None;
        }
        buf[0] = VERSION;
        buf[1] = self.algorithm.code();
        buf[2..4].copy_from_slice(&id.to_be_bytes());
        buf[4] = flags;
        // A CSPRNG in user space, reseeded after fork (`crate::rng`): a
        // getrandom syscall per seal cost a quarter of a small seal + open.
        crate::rng::fill(&mut buf[HEADER_LEN..start]);
        let ad = self.ad(&buf[..HEADER_LEN]);
        let (head, body) = buf.split_at_mut(start);
        let tag = cipher.encrypt(&head[HEADER_LEN..], &ad, body)?;
        buf.extend_from_slice(&tag);
        Some(buf)
    }

    /// Seals a copy of `plaintext` (see [`Sealer::seal_in_place`]).
    #[cfg(test)]
    pub fn seal(&self, flags: u8, plaintext: &[u8]) -> Option<Vec<u8>> {
        let mut buf = vec![0; self.prefix_len()];
        buf.extend_from_slice(plaintext);
        self.seal_in_place(flags, buf)
    }

    /// Opens an envelope, decrypting in place. The error is a reason for the
    /// operator's debug log, never for the client.
    pub fn open(&self, mut sealed: Vec<u8>) -> Result<Opened, &'static str> {
        let start = self.prefix_len();
        if sealed.len() < self.algorithm.overhead() {
            return Err("shorter than an envelope");
        }
        let header = &sealed[..HEADER_LEN];
        if header[0] != VERSION {
            return Err("unknown envelope version");
        }
        if header[1] != self.algorithm.code() {
            return Err("sealed with another algorithm");
        }
        let flags = header[4];
        if flags & !KNOWN_FLAGS != 0 {
            return Err("unknown flags");
        }
        let key_id = u16::from_be_bytes([header[2], header[3]]);
        let Some((_, cipher)) = self.keys.iter().find(|(id, _)| *id == key_id) else {
            return Err("sealed with a key that is not in the ring");
        };
        let ad = self.ad(header);
        let end = sealed.len() - TAG_LEN;
        let (head, rest) = sealed.split_at_mut(start);
        let (ct, tag) = rest.split_at_mut(end - start);
        if !cipher.decrypt(&head[HEADER_LEN..], &ad, ct, tag) {
            return Err("authentication failed (tampered, or another purpose or context)");
        }
        Ok(Opened {
            flags,
            key_id,
            buf: sealed,
            range: start..end,
        })
    }

    /// Whether `id` is the current key.
    pub fn is_current(&self, id: KeyId) -> bool {
        self.keys[0].0 == id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipe_replaces_the_key_material_with_a_zero_key() {
        for alg in [&AES_256_GCM, &CHACHA20_POLY1305] {
            let seal = |key: &LessSafeKey| {
                let mut buf = *b"plaintext";
                let nonce = Nonce::assume_unique_for_key([7; NONCE_LEN]);
                let tag = key
                    .seal_in_place_separate_tag(nonce, Aad::empty(), &mut buf)
                    .unwrap();
                (buf, tag.as_ref().to_vec())
            };
            let new_key = |k: &[u8; 32]| LessSafeKey::new(UnboundKey::new(alg, k).unwrap());
            let mut key = new_key(&[0x5a; 32]);
            let secret = seal(&key);
            wipe(&mut key);
            // Same algorithm, now the all-zero key: the secret one is gone.
            assert_eq!(key.algorithm(), alg);
            assert_ne!(seal(&key), secret);
            assert_eq!(seal(&key), seal(&new_key(&[0; 32])));
        }
    }

    fn ring(id: KeyId, secret: &str) -> KeyRing {
        KeyRing::builder().current(id, secret).build().unwrap()
    }
    const S1: &str = "0123456789abcdef0123456789abcdef";
    const S2: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn both_algorithms_round_trip_and_differ_on_the_wire() {
        for alg in [Algorithm::XChaCha20Poly1305, Algorithm::Aes256Gcm] {
            let s = Sealer::new(&ring(1, S1), KeyPurpose::CookieSealing, alg, b"id");
            let sealed = s.seal(FLAG_GZIP, b"hello").unwrap();
            assert_eq!(sealed.len(), alg.overhead() + 5);
            let o = s.open(sealed).unwrap();
            assert_eq!(
                (o.flags, o.key_id, &o.buf[o.range.clone()]),
                (FLAG_GZIP, 1, &b"hello"[..])
            );
            assert_ne!(s.seal(0, b"hello").unwrap(), s.seal(0, b"hello").unwrap());
        }
    }

    #[test]
    fn another_purpose_context_algorithm_or_key_does_not_open() {
        let r = ring(1, S1);
        let base = Sealer::new(&r, KeyPurpose::CookieSealing, Algorithm::default(), b"id");
        let sealed = base.seal(0, b"x").unwrap();
        let others = [
            Sealer::new(&r, KeyPurpose::StoreData, Algorithm::default(), b"id"),
            Sealer::new(&r, KeyPurpose::CookieSealing, Algorithm::default(), b"sid"),
            Sealer::new(&r, KeyPurpose::CookieSealing, Algorithm::Aes256Gcm, b"id"),
            Sealer::new(
                &ring(1, S2),
                KeyPurpose::CookieSealing,
                Algorithm::default(),
                b"id",
            ),
            Sealer::new(
                &ring(2, S1),
                KeyPurpose::CookieSealing,
                Algorithm::default(),
                b"id",
            ),
        ];
        for other in &others {
            assert!(other.open(sealed.clone()).is_err());
        }
    }

    #[test]
    fn every_flipped_bit_of_the_header_and_body_is_rejected() {
        let s = Sealer::new(
            &ring(1, S1),
            KeyPurpose::StoreData,
            Algorithm::default(),
            b"",
        );
        let sealed = s.seal(0, b"some plaintext").unwrap();
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut t = sealed.clone();
                t[i] ^= 1 << bit;
                assert!(s.open(t).is_err(), "byte {i} bit {bit}");
            }
        }
        for len in 0..sealed.len() {
            assert!(
                s.open(sealed[..len].to_vec()).is_err(),
                "truncated at {len}"
            );
        }
    }

    // ---- equivalence with RustCrypto (the previous implementation) ----

    use aes_gcm::Aes256Gcm;
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use chacha20poly1305::XChaCha20Poly1305;
    use proptest::prelude::*;

    /// RustCrypto's ciphertext ‖ tag.
    fn rustcrypto_seal(
        alg: Algorithm,
        key: &[u8; 32],
        nonce: &[u8],
        ad: &[u8],
        pt: &[u8],
    ) -> Vec<u8> {
        let mut buf = pt.to_vec();
        let tag = match alg {
            Algorithm::XChaCha20Poly1305 => XChaCha20Poly1305::new(key.into())
                .encrypt_in_place_detached(nonce.into(), ad, &mut buf)
                .unwrap(),
            Algorithm::Aes256Gcm => Aes256Gcm::new(key.into())
                .encrypt_in_place_detached(nonce.into(), ad, &mut buf)
                .unwrap(),
        };
        buf.extend_from_slice(&tag);
        buf
    }

    fn rustcrypto_open(
        alg: Algorithm,
        key: &[u8; 32],
        nonce: &[u8],
        ad: &[u8],
        ct_tag: &[u8],
    ) -> Option<Vec<u8>> {
        let (ct, tag) = ct_tag.split_at(ct_tag.len() - TAG_LEN);
        let mut buf = ct.to_vec();
        let ok = match alg {
            Algorithm::XChaCha20Poly1305 => XChaCha20Poly1305::new(key.into())
                .decrypt_in_place_detached(nonce.into(), ad, &mut buf, tag.into())
                .is_ok(),
            Algorithm::Aes256Gcm => Aes256Gcm::new(key.into())
                .decrypt_in_place_detached(nonce.into(), ad, &mut buf, tag.into())
                .is_ok(),
        };
        ok.then_some(buf)
    }

    /// Ours: ciphertext ‖ tag.
    fn our_seal(alg: Algorithm, key: &[u8; 32], nonce: &[u8], ad: &[u8], pt: &[u8]) -> Vec<u8> {
        let mut buf = pt.to_vec();
        let tag = Cipher::new(alg, key).encrypt(nonce, ad, &mut buf).unwrap();
        buf.extend_from_slice(&tag);
        buf
    }

    fn our_open(
        alg: Algorithm,
        key: &[u8; 32],
        nonce: &[u8],
        ad: &[u8],
        ct_tag: &[u8],
    ) -> Option<Vec<u8>> {
        let (ct, tag) = ct_tag.split_at(ct_tag.len() - TAG_LEN);
        let mut buf = ct.to_vec();
        Cipher::new(alg, key)
            .decrypt(nonce, ad, &mut buf, tag)
            .then_some(buf)
    }

    fn check_equivalent(
        alg: Algorithm,
        key: &[u8; 32],
        nonce: &[u8],
        ad: &[u8],
        pt: &[u8],
    ) -> Result<(), TestCaseError> {
        let ours = our_seal(alg, key, nonce, ad, pt);
        let theirs = rustcrypto_seal(alg, key, nonce, ad, pt);
        prop_assert_eq!(&ours, &theirs, "ciphertext and tag differ");
        let opened = our_open(alg, key, nonce, ad, &theirs);
        prop_assert_eq!(opened.as_deref(), Some(pt));
        let opened = rustcrypto_open(alg, key, nonce, ad, &ours);
        prop_assert_eq!(opened.as_deref(), Some(pt));
        // One flipped bit anywhere: neither side opens the other's output.
        let mut bad = theirs.clone();
        let i = (key[0] as usize) % bad.len();
        bad[i] ^= 1 << (key[1] % 8);
        prop_assert!(our_open(alg, key, nonce, ad, &bad).is_none());
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn xchacha20poly1305_matches_rustcrypto(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; 24]>(),
            ad in proptest::collection::vec(any::<u8>(), 0..80),
            pt in proptest::collection::vec(any::<u8>(), 0..4200),
        ) {
            check_equivalent(Algorithm::XChaCha20Poly1305, &key, &nonce, &ad, &pt)?;
        }

        #[test]
        fn aes256gcm_matches_rustcrypto(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; 12]>(),
            ad in proptest::collection::vec(any::<u8>(), 0..80),
            pt in proptest::collection::vec(any::<u8>(), 0..4200),
        ) {
            check_equivalent(Algorithm::Aes256Gcm, &key, &nonce, &ad, &pt)?;
        }

        /// Whole envelopes: ours open with RustCrypto, and an envelope built
        /// with RustCrypto (what earlier releases wrote) opens with ours.
        #[test]
        fn envelopes_interoperate_with_rustcrypto(
            secret in "[ -~]{32,64}",
            context in proptest::collection::vec(any::<u8>(), 0..40),
            pt in proptest::collection::vec(any::<u8>(), 0..3000),
            flags in 0..=FLAG_GZIP,
            aes in any::<bool>(),
        ) {
            let alg = if aes { Algorithm::Aes256Gcm } else { Algorithm::XChaCha20Poly1305 };
            let r = ring(7, &secret);
            let s = Sealer::new(&r, KeyPurpose::CookieSealing, alg, &context);
            let key = r.current(KeyPurpose::CookieSealing).1.expose_secret();
            let start = s.prefix_len();

            let sealed = s.seal(flags, &pt).unwrap();
            let ad = s.ad(&sealed[..HEADER_LEN]);
            let opened = rustcrypto_open(alg, key, &sealed[HEADER_LEN..start], &ad, &sealed[start..]);
            prop_assert_eq!(opened.as_deref(), Some(&pt[..]));

            let mut theirs = sealed[..start].to_vec();
            getrandom::fill(&mut theirs[HEADER_LEN..]).unwrap();
            let ct_tag = rustcrypto_seal(alg, key, &theirs[HEADER_LEN..], &ad, &pt);
            theirs.extend_from_slice(&ct_tag);
            let o = s.open(theirs).unwrap();
            prop_assert_eq!((o.flags, o.key_id), (flags, 7));
            prop_assert_eq!(&o.buf[o.range.clone()], &pt[..]);
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// draft-irtf-cfrg-xchacha-03 appendix A.3.1.
    #[test]
    fn xchacha20poly1305_draft_test_vector() {
        let key: [u8; 32] = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
            .try_into()
            .unwrap();
        let nonce = hex("404142434445464748494a4b4c4d4e4f5051525354555657");
        let ad = hex("50515253c0c1c2c3c4c5c6c7");
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let expected = hex(
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb
             731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452
             2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9
             21f9664c97637da9768812f615c68b13b52e
             c0875924c1c7987947deafd8780acf49",
        );
        let alg = Algorithm::XChaCha20Poly1305;
        assert_eq!(our_seal(alg, &key, &nonce, &ad, pt), expected);
        assert_eq!(
            our_open(alg, &key, &nonce, &ad, &expected).as_deref(),
            Some(&pt[..])
        );
    }
}
