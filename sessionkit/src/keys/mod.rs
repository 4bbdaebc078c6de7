//! Keys: the [`KeyRing`] every sealed value is made and opened with.
//!
//! A ring is built **once**, at start-up, from one or more secrets: the
//! *current* one (used to seal) first, *previous* ones (still accepted when
//! opening) after. Each secret carries a [`KeyId`] that is written into every
//! sealed value, so opening goes straight to the right key and never tries
//! keys blindly.
//!
//! From each secret the ring derives one independent 256-bit subkey per
//! [`KeyPurpose`] with HKDF-SHA256, so a value sealed for one purpose (a
//! cookie) can never be opened as another (a stored record), and a leak of one
//! subkey says nothing about the others. Secrets that are passwords rather
//! than random bytes can first go through PBKDF2-HMAC-SHA256
//! ([`KeyRingBuilder::password_kdf`]); that runs here, once per secret, never
//! per request, so its iteration count costs start-up time only.
//!
//! Secrets shorter than 32 bytes, a missing current secret or duplicate key
//! ids are configuration errors, all reported at once ([`KeyRingError`]).
//! Key bytes are zeroized when the ring is dropped and never printed by
//! `Debug`. A codec built from the ring keeps copies: the XChaCha20 key in a
//! zeroizing buffer, and for AES-256-GCM `ring`'s key schedule. `ring` has no
//! zeroize; the codec overwrites its key objects in place with an all-zero
//! key when the codec is dropped (AES) or the message is done (the
//! per-message ChaCha20 subkey): best effort, without volatile writes.
//! The HKDF state each secret is extracted into while its subkeys are
//! derived (the `hkdf` and `hmac` crates keep it unwiped) is dropped
//! without being overwritten.
//!
//! ```
//! use sessionkit::keys::{KeyPurpose, KeyRing};
//!
//! // Generate a secret once (e.g. `SESSION_SECRET`) and keep it in your secret store.
//! let secret = KeyRing::generate_secret();
//! assert!(secret.len() >= 43);
//!
//! let ring = KeyRing::builder()
//!     .current(2, &secret)                                  // seals
//!     .previous(1, "an older secret of at least 32 bytes!!") // still opens
//!     .build()
//!     .expect("valid secrets");
//! assert_eq!(ring.current_id(), 2);
//! assert!(ring.subkey(1, KeyPurpose::CookieSealing).is_some());
//! assert!(!format!("{ring:?}").contains(&secret));
//!
//! // Every problem at once.
//! let err = KeyRing::builder().current(1, "short").previous(1, "also short").build().unwrap_err();
//! assert_eq!(err.problems().len(), 3); // two short secrets, one duplicate id
//! ```
//!
//! # Rotation
//! 1. Generate a new secret; put it first with a new id, keep the old one after it.
//! 2. Deploy. New values are sealed with the new key; old ones still open, and
//!    each is re-sealed under the new key the next time it is written.
//! 3. After the idle timeout has passed, drop the old secret: any value still
//!    sealed with it belongs to a session that is dead anyway (every write sets
//!    the idle deadline at most `idle_timeout` ahead). Values sealed with a key
//!    no longer in the ring no longer open.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The identifier of one secret in a [`KeyRing`], written into every sealed value.
pub type KeyId = u16;

/// Length of every derived subkey in bytes (256 bits).
pub const SUBKEY_LEN: usize = 32;

/// The minimum length of a secret in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Default PBKDF2-HMAC-SHA256 iteration count (OWASP's 2023 recommendation).
pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 600_000;

/// The fewest PBKDF2 iterations accepted without
/// [`PasswordKdf::dangerously_few_iterations`]: below it the stretching
/// adds little to the secret's own strength.
pub const MIN_PBKDF2_ITERATIONS: u32 = 100_000;

/// What a subkey is used for. Each purpose gets its own key from every secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyPurpose {
    /// Sealing whole sessions inside cookies (the cookie store).
    CookieSealing,
    /// Sealing session records kept by server-side stores ("encrypt stored data").
    StoreData,
    /// Keyed fingerprints that bind a session to a client (IP, User-Agent).
    BindingFingerprint,
    /// Authenticating messages between the nodes of a cluster.
    ClusterMessages,
}

impl KeyPurpose {
    /// Every purpose, in a fixed order.
    pub const ALL: [KeyPurpose; 4] = [
        KeyPurpose::CookieSealing,
        KeyPurpose::StoreData,
        KeyPurpose::BindingFingerprint,
        KeyPurpose::ClusterMessages,
    ];

    /// A stable label: the HKDF `info` for this purpose, also bound into
    /// the associated data of sealed values.
    pub fn label(self) -> &'static str {
        match self {
            KeyPurpose::CookieSealing => "sessionkit/v1/cookie-sealing",
            KeyPurpose::StoreData => "sessionkit/v1/store-data",
            KeyPurpose::BindingFingerprint => "sessionkit/v1/binding-fingerprint",
            KeyPurpose::ClusterMessages => "sessionkit/v1/cluster-messages",
        }
    }

    fn index(self) -> usize {
        match self {
            KeyPurpose::CookieSealing => 0,
            KeyPurpose::StoreData => 1,
            KeyPurpose::BindingFingerprint => 2,
            KeyPurpose::ClusterMessages => 3,
        }
    }
}

/// A 256-bit key derived for one purpose. Zeroized on drop; `Debug` prints
/// nothing of it.
#[derive(Clone)]
pub struct SubKey(Zeroizing<[u8; SUBKEY_LEN]>);

impl SubKey {
    /// The key bytes, to hand to a MAC or cipher. Do not log or store them.
    pub fn expose_secret(&self) -> &[u8; SUBKEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for SubKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubKey(<redacted>)")
    }
}

struct KeyEntry {
    id: KeyId,
    subkeys: [SubKey; 4],
}

/// The keys of one deployment: current first, previous after. Build it once
/// with [`KeyRing::builder`] and share it (it is cheap to clone behind an
/// `Arc`, and the stores copy the keys they need at construction).
pub struct KeyRing {
    entries: Vec<KeyEntry>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current_id())
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Starts a builder.
    pub fn builder() -> KeyRingBuilder {
        KeyRingBuilder::default()
    }

    /// A new random secret: 32 bytes from the operating system's CSPRNG,
    /// as 43 characters of unpadded base64url (safe in environment variables
    /// and config files). Pass the text as it is to [`KeyRingBuilder::current`].
    ///
    /// ```
    /// let s = sessionkit::keys::KeyRing::generate_secret();
    /// assert_eq!(s.len(), 43);
    /// assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    /// ```
    ///
    /// # Panics
    /// Only if the operating system cannot provide randomness at all.
    pub fn generate_secret() -> String {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut()).expect("the OS random number generator is unavailable");
        URL_SAFE_NO_PAD.encode(bytes.as_ref())
    }

    /// The id of the current key (the one that seals).
    pub fn current_id(&self) -> KeyId {
        self.entries[0].id
    }

    /// Every key id, current first.
    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.entries.iter().map(|e| e.id)
    }

    /// The current key's subkey for `purpose`.
    pub fn current(&self, purpose: KeyPurpose) -> (KeyId, &SubKey) {
        let e = &self.entries[0];
        (e.id, &e.subkeys[purpose.index()])
    }

    /// The subkey for `purpose` of key `id`, if the ring holds that key.
    pub fn subkey(&self, id: KeyId, purpose: KeyPurpose) -> Option<&SubKey> {
        self.entries
            .iter()
            .find(|e| e.id == id)
            .map(|e| &e.subkeys[purpose.index()])
    }

    /// Every key's subkey for `purpose`, current first.
    pub fn subkeys(&self, purpose: KeyPurpose) -> impl Iterator<Item = (KeyId, &SubKey)> + '_ {
        self.entries
            .iter()
            .map(move |e| (e.id, &e.subkeys[purpose.index()]))
    }
}

/// PBKDF2-HMAC-SHA256 settings for password-like secrets.
#[derive(Clone)]
pub struct PasswordKdf {
    iterations: u32,
    salt: Vec<u8>,
    few_allowed: bool,
}

impl fmt::Debug for PasswordKdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordKdf")
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .finish()
    }
}

impl PasswordKdf {
    /// PBKDF2 with `iterations` rounds (at least [`MIN_PBKDF2_ITERATIONS`];
    /// [`DEFAULT_PBKDF2_ITERATIONS`] is recommended) and a salt of at least
    /// 16 bytes. Use a salt unique to the deployment (it need not be secret).
    pub fn new(iterations: u32, salt: impl Into<Vec<u8>>) -> Self {
        PasswordKdf {
            iterations,
            salt: salt.into(),
            few_allowed: false,
        }
    }

    /// Accepts fewer than [`MIN_PBKDF2_ITERATIONS`] (but more than zero):
    /// a password-like secret then gets next to no stretching. For tests
    /// and benchmarks, where start-up time matters more.
    pub fn dangerously_few_iterations(mut self) -> Self {
        self.few_allowed = true;
        self
    }
}

/// Builder for [`KeyRing`].
#[derive(Default)]
#[must_use = "call .build() to get a KeyRing"]
pub struct KeyRingBuilder {
    secrets: Vec<(KeyId, Zeroizing<Vec<u8>>)>,
    has_current: bool,
    kdf: Option<PasswordKdf>,
}

impl fmt::Debug for KeyRingBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRingBuilder")
            .field("ids", &self.secrets.iter().map(|s| s.0).collect::<Vec<_>>())
            .field("kdf", &self.kdf)
            .finish()
    }
}

impl KeyRingBuilder {
    /// The current secret: it seals every new value. Calling it again
    /// replaces the previous call's secret.
    pub fn current(mut self, id: KeyId, secret: impl AsRef<[u8]>) -> Self {
        let s = (id, Zeroizing::new(secret.as_ref().to_vec()));
        if self.has_current {
            self.secrets[0] = s;
        } else {
            self.secrets.insert(0, s);
            self.has_current = true;
        }
        self
    }

    /// A previous secret: values sealed with it still open. Add them newest first.
    pub fn previous(mut self, id: KeyId, secret: impl AsRef<[u8]>) -> Self {
        self.secrets
            .push((id, Zeroizing::new(secret.as_ref().to_vec())));
        self
    }

    /// Runs every secret through PBKDF2-HMAC-SHA256 before HKDF. Only for
    /// secrets a human chose; random secrets (see [`KeyRing::generate_secret`])
    /// gain nothing from it. It runs once, in [`KeyRingBuilder::build`].
    pub fn password_kdf(mut self, kdf: PasswordKdf) -> Self {
        self.kdf = Some(kdf);
        self
    }

    /// Validates the secrets and derives every subkey. With a password KDF
    /// this takes as long as the iteration count says (once per secret).
    pub fn build(self) -> Result<KeyRing, KeyRingError> {
        let mut problems = Vec::new();
        if !self.has_current {
            problems.push(KeyProblem::MissingSecret);
        }
        for (i, (id, secret)) in self.secrets.iter().enumerate() {
            if secret.len() < MIN_SECRET_LEN {
                problems.push(KeyProblem::SecretTooShort {
                    id: *id,
                    len: secret.len(),
                });
            }
            if self.secrets[..i].iter().any(|(other, _)| other == id) {
                problems.push(KeyProblem::DuplicateId(*id));
            }
        }
        if let Some(kdf) = &self.kdf {
            if kdf.iterations == 0 {
                problems.push(KeyProblem::ZeroIterations);
            } else if kdf.iterations < MIN_PBKDF2_ITERATIONS && !kdf.few_allowed {
                problems.push(KeyProblem::TooFewIterations(kdf.iterations));
            }
            if kdf.salt.len() < 16 {
                problems.push(KeyProblem::SaltTooShort(kdf.salt.len()));
            }
        }
        if !problems.is_empty() {
            return Err(KeyRingError { problems });
        }
        let entries = self
            .secrets
            .iter()
            .map(|(id, secret)| KeyEntry {
                id: *id,
                subkeys: derive(secret, self.kdf.as_ref()),
            })
            .collect();
        Ok(KeyRing { entries })
    }
}

/// Salt of the HKDF extract step: fixed, since each secret is already unique
/// and high-entropy (RFC 5869 §3.1 allows it); it separates our keys from any
/// other use of the same secret.
const HKDF_SALT: &[u8] = b"sessionkit key ring v1";

fn derive(secret: &[u8], kdf: Option<&PasswordKdf>) -> [SubKey; 4] {
    let stretched;
    let ikm: &[u8] = match kdf {
        Some(kdf) => {
            #[cfg(test)]
            tests::PBKDF2_RUNS.with(|c| c.set(c.get() + 1));
            let mut out = Zeroizing::new([0u8; 32]);
            pbkdf2::pbkdf2_hmac::<Sha256>(secret, &kdf.salt, kdf.iterations, out.as_mut());
            stretched = out;
            stretched.as_ref()
        }
        None => secret,
    };
    let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), ikm);
    KeyPurpose::ALL.map(|purpose| {
        let mut okm = Zeroizing::new([0u8; SUBKEY_LEN]);
        hk.expand(purpose.label().as_bytes(), okm.as_mut())
            .expect("32 bytes is within HKDF-SHA256's 8160-byte output limit");
        SubKey(okm)
    })
}

/// One thing wrong with the secrets given to a [`KeyRingBuilder`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyProblem {
    /// No current secret was given.
    #[error("no session secret was given; generate one with KeyRing::generate_secret()")]
    MissingSecret,
    /// A secret is shorter than [`MIN_SECRET_LEN`].
    #[error("session secret with key id {id} is {len} bytes; at least 32 are required (generate one with KeyRing::generate_secret())")]
    SecretTooShort {
        /// The key id.
        id: KeyId,
        /// Its length in bytes.
        len: usize,
    },
    /// Two secrets share one key id.
    #[error("key id {0} is used by more than one secret")]
    DuplicateId(KeyId),
    /// The PBKDF2 iteration count is zero.
    #[error("PBKDF2 iterations must be greater than zero (600000 is recommended)")]
    ZeroIterations,
    /// Fewer PBKDF2 iterations than [`MIN_PBKDF2_ITERATIONS`], without
    /// [`PasswordKdf::dangerously_few_iterations`].
    #[error(
        "PBKDF2 iterations are {0}; at least 100000 are required (600000 is recommended). \
         A new count derives new keys: a deployment already sealing with this count keeps \
         its keys with PasswordKdf::dangerously_few_iterations() until it rotates its secrets"
    )]
    TooFewIterations(u32),
    /// The PBKDF2 salt is shorter than 16 bytes.
    #[error("PBKDF2 salt is {0} bytes; at least 16 are required")]
    SaltTooShort(usize),
}

/// Every problem found in the secrets, reported together. Never contains
/// secret material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRingError {
    problems: Vec<KeyProblem>,
}

impl KeyRingError {
    /// The problems, in the order they were found.
    pub fn problems(&self) -> &[KeyProblem] {
        &self.problems
    }
}

impl fmt::Display for KeyRingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid session key configuration:")?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}
impl std::error::Error for KeyRingError {}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// How many PBKDF2 derivations ran on this thread (tests only).
        pub(crate) static PBKDF2_RUNS: Cell<usize> = const { Cell::new(0) };
    }

    const S1: &str = "0123456789abcdef0123456789abcdef";
    const S2: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn each_purpose_gets_its_own_key() {
        let ring = KeyRing::builder().current(1, S1).build().unwrap();
        let keys: Vec<_> = KeyPurpose::ALL
            .iter()
            .map(|p| *ring.current(*p).1.expose_secret())
            .collect();
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j]);
            }
        }
    }

    #[test]
    fn derivation_is_deterministic_and_depends_on_the_secret() {
        let a = KeyRing::builder().current(1, S1).build().unwrap();
        let b = KeyRing::builder().current(7, S1).build().unwrap();
        let c = KeyRing::builder().current(1, S2).build().unwrap();
        let k = |r: &KeyRing| *r.current(KeyPurpose::CookieSealing).1.expose_secret();
        assert_eq!(k(&a), k(&b));
        assert_ne!(k(&a), k(&c));
    }

    #[test]
    fn password_kdf_changes_the_keys() {
        let plain = KeyRing::builder().current(1, S1).build().unwrap();
        let stretched = KeyRing::builder()
            .current(1, S1)
            .password_kdf(PasswordKdf::new(10, "a salt of 16 bytes!").dangerously_few_iterations())
            .build()
            .unwrap();
        assert_ne!(
            plain.current(KeyPurpose::StoreData).1.expose_secret(),
            stretched.current(KeyPurpose::StoreData).1.expose_secret()
        );
    }

    #[test]
    fn missing_short_and_duplicate_secrets_are_all_reported() {
        let err = KeyRing::builder().build().unwrap_err();
        assert_eq!(err.problems(), &[KeyProblem::MissingSecret]);
        let err = KeyRing::builder()
            .current(1, "short")
            .previous(1, S1)
            .password_kdf(PasswordKdf::new(0, "salt"))
            .build()
            .unwrap_err();
        assert_eq!(
            err.problems(),
            &[
                KeyProblem::SecretTooShort { id: 1, len: 5 },
                KeyProblem::DuplicateId(1),
                KeyProblem::ZeroIterations,
                KeyProblem::SaltTooShort(4),
            ]
        );
        assert!(err.to_string().contains("generate_secret"));
        assert!(!err.to_string().contains(S1));
    }

    #[test]
    fn too_few_pbkdf2_iterations_need_the_named_opt_out() {
        let with = |kdf: PasswordKdf| KeyRing::builder().current(1, S1).password_kdf(kdf).build();
        let err = with(PasswordKdf::new(1, "a salt of 16 bytes!")).unwrap_err();
        assert_eq!(err.problems(), &[KeyProblem::TooFewIterations(1)]);
        assert!(err.to_string().contains("100000"), "{err}");
        let floor = MIN_PBKDF2_ITERATIONS;
        assert!(with(PasswordKdf::new(floor - 1, "a salt of 16 bytes!")).is_err());
        assert!(
            with(PasswordKdf::new(1, "a salt of 16 bytes!").dangerously_few_iterations()).is_ok()
        );
        // Zero stays an error whatever the opt-out.
        let zero = PasswordKdf::new(0, "a salt of 16 bytes!").dangerously_few_iterations();
        assert_eq!(
            with(zero).unwrap_err().problems(),
            &[KeyProblem::ZeroIterations]
        );
    }

    #[test]
    fn previous_only_without_current_is_an_error() {
        let err = KeyRing::builder().previous(1, S1).build().unwrap_err();
        assert_eq!(err.problems(), &[KeyProblem::MissingSecret]);
    }

    #[test]
    fn generated_secrets_are_valid_and_distinct() {
        let (a, b) = (KeyRing::generate_secret(), KeyRing::generate_secret());
        assert_ne!(a, b);
        assert!(KeyRing::builder().current(1, &a).build().is_ok());
    }

    #[test]
    fn debug_prints_no_key_material() {
        let ring = KeyRing::builder()
            .current(3, S1)
            .previous(2, S2)
            .build()
            .unwrap();
        let dbg = format!("{ring:?} {:?}", ring.current(KeyPurpose::CookieSealing).1);
        assert!(dbg.contains("current: 3"));
        assert!(!dbg.contains(S1) && !dbg.contains(S2));
        let key = ring.current(KeyPurpose::CookieSealing).1.expose_secret();
        assert!(!dbg.contains(&format!("{:?}", &key[..4])));
        let builder = format!("{:?}", KeyRing::builder().current(1, S1));
        assert!(!builder.contains(S1));
    }

    #[test]
    fn keys_are_found_by_id_current_first() {
        let ring = KeyRing::builder()
            .previous(1, S2)
            .current(2, S1)
            .build()
            .unwrap();
        assert_eq!(ring.ids().collect::<Vec<_>>(), vec![2, 1]);
        assert!(ring.subkey(1, KeyPurpose::StoreData).is_some());
        assert!(ring.subkey(9, KeyPurpose::StoreData).is_none());
    }
}
