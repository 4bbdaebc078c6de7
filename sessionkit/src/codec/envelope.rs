//! The sealed envelope: AEAD over a small versioned header.
//!
//! ```text
//! byte  0      version (1)
//! byte  1      algorithm (1 = XChaCha20-Poly1305, 2 = AES-256-GCM)
//! bytes 2..4   key id, big-endian
//! byte  4      flags (bit 0: the plaintext is gzip-compressed; other bits must be 0)
//! then         nonce (24 bytes for XChaCha20-Poly1305, 12 for AES-256-GCM)
//! then         ciphertext, then the 16-byte tag
//! ```
//!
//! The associated data is `SHA-256("sessionkit" ‖ purpose label ‖
//! length-prefixed context) ‖ header` (the digest is computed once):
//! a value sealed for one purpose or context (a cookie name) does not open
//! under another, and the header (version, algorithm, key id, flags) cannot
//! be changed without the tag failing. The algorithm must be the one the
//! opener is configured with: a value cannot ask to be opened another way.
//!
//! The AEAD comes from RustCrypto; nothing cryptographic is written here.

use aes_gcm::Aes256Gcm;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::XChaCha20Poly1305;

use sha2::{Digest, Sha256};

use crate::keys::{KeyId, KeyPurpose, KeyRing, SubKey};

/// The envelope format version written by this release.
pub const VERSION: u8 = 1;
/// Header length in bytes (version, algorithm, key id, flags).
pub const HEADER_LEN: usize = 5;
/// Tag length in bytes (both algorithms).
pub const TAG_LEN: usize = 16;
/// Flag: the plaintext was gzip-compressed before sealing.
pub const FLAG_GZIP: u8 = 0b0000_0001;
const KNOWN_FLAGS: u8 = FLAG_GZIP;

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
///   support matters more to you than that bookkeeping.
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

enum Cipher {
    XChaCha(Box<XChaCha20Poly1305>),
    Aes(Box<Aes256Gcm>),
}

impl Cipher {
    fn new(algorithm: Algorithm, key: &SubKey) -> Self {
        let k = key.expose_secret();
        match algorithm {
            Algorithm::XChaCha20Poly1305 => {
                Cipher::XChaCha(Box::new(XChaCha20Poly1305::new(k.into())))
            }
            Algorithm::Aes256Gcm => Cipher::Aes(Box::new(Aes256Gcm::new(k.into()))),
        }
    }

    fn encrypt(&self, nonce: &[u8], ad: &[u8], buf: &mut [u8]) -> Option<[u8; TAG_LEN]> {
        let tag = match self {
            Cipher::XChaCha(c) => c.encrypt_in_place_detached(nonce.into(), ad, buf).ok()?,
            Cipher::Aes(c) => c.encrypt_in_place_detached(nonce.into(), ad, buf).ok()?,
        };
        Some(tag.into())
    }

    fn decrypt(&self, nonce: &[u8], ad: &[u8], buf: &mut [u8], tag: &[u8]) -> bool {
        match self {
            Cipher::XChaCha(c) => c
                .decrypt_in_place_detached(nonce.into(), ad, buf, tag.into())
                .is_ok(),
            Cipher::Aes(c) => c
                .decrypt_in_place_detached(nonce.into(), ad, buf, tag.into())
                .is_ok(),
        }
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
            .map(|(id, key)| (id, Cipher::new(algorithm, key)))
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
        getrandom::fill(&mut buf[HEADER_LEN..start])
            .expect("the OS random number generator is unavailable");
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
}
