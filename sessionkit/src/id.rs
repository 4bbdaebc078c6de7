//! Session identifiers: 256 random bits from a CSPRNG seeded by the operating
//! system (a thread-local ChaCha12, reseeded after `fork`; see `rng.rs`).
//!
//! A [`SessionId`] is what a server-side store hands to the browser. It is
//! encoded as 43 characters of unpadded base64url. [`SessionId::parse`] checks
//! the length and the alphabet before any store sees the value, so hostile
//! cookie values (`*`, CRLF, 10 kB of junk) never reach a backend.
//!
//! ```
//! use sessionkit::SessionId;
//!
//! let id = SessionId::generate();
//! let text = id.encode();
//! assert_eq!(text.len(), 43);
//! assert_eq!(SessionId::parse(&text).unwrap(), id);
//! assert!(SessionId::parse("*\r\n").is_err());
//! // Debug never prints the whole id.
//! assert!(!format!("{id:?}").contains(&text));
//! ```

use std::fmt;

use sha2::{Digest, Sha256};

/// Length of a session id in bytes (256 bits).
pub const ID_BYTES: usize = 32;
/// Length of an encoded session id: 32 bytes as unpadded base64url.
pub const ENCODED_ID_LEN: usize = 43;

/// A 256-bit session identifier.
///
/// Equality is constant-time. `Debug` shows only a short prefix; there is no
/// `Display`, so an id cannot end up in a log line by accident. Use
/// [`SessionId::encode`] where the full value is really meant (the cookie).
#[derive(Clone, Copy)]
pub struct SessionId([u8; ID_BYTES]);

/// Why a string is not a session id. Deliberately carries no copy of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSessionId {
    /// The value does not have the length of an encoded id (in bytes: the
    /// alphabet is ASCII).
    #[error("session id must be {ENCODED_ID_LEN} characters, got {0} bytes")]
    Length(usize),
    /// The value holds characters outside the base64url alphabet.
    #[error("session id holds characters outside the base64url alphabet")]
    Alphabet,
}

impl SessionId {
    /// A fresh id: 256 bits from a CSPRNG seeded by the operating system
    /// (a thread-local ChaCha12, reseeded after `fork`).
    ///
    /// # Panics
    /// Only if the operating system cannot provide randomness at all, in which
    /// case no secure session can be issued and continuing would be worse.
    pub fn generate() -> Self {
        let mut bytes = [0u8; ID_BYTES];
        crate::rng::fill(&mut bytes);
        SessionId(bytes)
    }

    /// Builds an id from raw bytes (for stores that keep ids in binary form).
    pub fn from_bytes(bytes: [u8; ID_BYTES]) -> Self {
        SessionId(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; ID_BYTES] {
        &self.0
    }

    /// Parses the cookie form. Length and alphabet are checked before
    /// anything is decoded; only the canonical encoding is accepted.
    pub fn parse(text: &str) -> Result<Self, InvalidSessionId> {
        let text = text.as_bytes();
        if text.len() != ENCODED_ID_LEN {
            return Err(InvalidSessionId::Length(text.len()));
        }
        // Hand-written rather than `base64`'s general decoder: this runs on
        // every request, the input has one fixed length, and one table pass
        // both checks the alphabet and decodes (about 4× fewer instructions,
        // measured with callgrind). `tests::parse_agrees_with_the_base64_crate`
        // checks it against the crate.
        let mut sextets = [0u8; ENCODED_ID_LEN];
        let mut bad = 0u8;
        for (out, &c) in sextets.iter_mut().zip(text) {
            let v = DECODE[c as usize];
            bad |= v;
            *out = v;
        }
        // 43 characters carry 258 bits: the last two must be zero, which
        // keeps the encoding canonical (one cookie value per id).
        if bad & INVALID != 0 || sextets[42] & 0b11 != 0 {
            return Err(InvalidSessionId::Alphabet);
        }
        // Constant indices, as in `encode`: ten whole quads, then the last
        // three sextets (two bytes). The compiler unrolls it; the former
        // `chunks` loop, whose last chunk is shorter, it did not.
        let s = &sextets;
        let quad = |i: usize| {
            u32::from(s[4 * i]) << 18
                | u32::from(s[4 * i + 1]) << 12
                | u32::from(s[4 * i + 2]) << 6
                | u32::from(s[4 * i + 3])
        };
        let mut bytes = [0u8; ID_BYTES];
        for i in 0..ID_BYTES / 3 {
            let n = quad(i);
            bytes[3 * i] = (n >> 16) as u8;
            bytes[3 * i + 1] = (n >> 8) as u8;
            bytes[3 * i + 2] = n as u8;
        }
        let n = u32::from(s[40]) << 18 | u32::from(s[41]) << 12 | u32::from(s[42]) << 6;
        bytes[30] = (n >> 16) as u8;
        bytes[31] = (n >> 8) as u8;
        Ok(SessionId(bytes))
    }

    /// The cookie form: 43 characters of unpadded base64url.
    pub fn encode(&self) -> String {
        // By hand for the same reason as `parse` (on every new session and
        // every server-side save); `tests::parse_agrees_with_the_base64_crate`
        // checks it against the crate. Fixed-size array, constant bounds:
        // the compiler unrolls it with no bounds checks (about 1.5k
        // instructions down to a few hundred, measured with callgrind).
        let b = &self.0;
        let mut out = [0u8; ENCODED_ID_LEN];
        let sextet = |n: u32, shift: u32| ALPHABET[(n >> shift) as usize & 63];
        for i in 0..ID_BYTES / 3 {
            let n =
                u32::from(b[3 * i]) << 16 | u32::from(b[3 * i + 1]) << 8 | u32::from(b[3 * i + 2]);
            out[4 * i] = sextet(n, 18);
            out[4 * i + 1] = sextet(n, 12);
            out[4 * i + 2] = sextet(n, 6);
            out[4 * i + 3] = sextet(n, 0);
        }
        // The last two bytes: three characters, no padding.
        let n = u32::from(b[30]) << 16 | u32::from(b[31]) << 8;
        out[40] = sextet(n, 18);
        out[41] = sextet(n, 12);
        out[42] = sextet(n, 6);
        ascii_string(&out)
    }

    /// SHA-256 of the id, hex encoded: what server-side stores use as a key,
    /// so that a dump of the store yields no usable cookie value.
    pub fn storage_key(&self) -> String {
        self.handle().to_string()
    }
}

impl SessionId {
    /// The session's [`SessionHandle`]: the SHA-256 of the id, which names
    /// the session in listings without being able to act as its cookie.
    ///
    /// ```
    /// use sessionkit::SessionId;
    ///
    /// let id = SessionId::generate();
    /// // The handle's text is the store key's hex (`storage_key`).
    /// assert_eq!(id.handle().to_string(), id.storage_key());
    /// ```
    pub fn handle(&self) -> SessionHandle {
        SessionHandle(Sha256::digest(self.0).into())
    }
}

/// Names a stored session without being its credential: the SHA-256 of the
/// session id (the hex of it is the id's [`SessionId::storage_key`]).
///
/// Listings ([`crate::store::QueryStore`], [`crate::Sessions::find_by`])
/// name sessions by handle, so that a store need not keep the raw id: a
/// Redis dump then yields no usable cookie. A handle can be shown to an
/// administrator, put in a URL and passed back to
/// [`crate::Sessions::delete_handle`] to revoke one session. A handle sent
/// as a cookie loads nothing (the store hashes it again).
///
/// `Display` and `FromStr` use 64 lowercase hex digits.
///
/// ```
/// use sessionkit::{SessionHandle, SessionId};
///
/// let handle = SessionId::generate().handle();
/// let text = handle.to_string();
/// assert_eq!(text.len(), 64);
/// assert_eq!(text.parse::<SessionHandle>().unwrap(), handle);
/// assert!("not a handle".parse::<SessionHandle>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionHandle([u8; 32]);

/// Why a string is not a [`SessionHandle`]. Carries no copy of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSessionHandle {
    /// The value is not 64 bytes long (64 hex digits are 64 bytes).
    #[error("session handle must be 64 hex digits, got {0} bytes")]
    Length(usize),
    /// The value holds a character that is not a lowercase hex digit.
    #[error("session handle holds a character that is not a lowercase hex digit")]
    Digit,
}

impl SessionHandle {
    /// A handle from its 32 raw bytes (a store that keeps handles in binary).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SessionHandle(bytes)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = HEX[(b >> 4) as usize];
            out[2 * i + 1] = HEX[(b & 15) as usize];
        }
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionHandle({self})")
    }
}

impl std::str::FromStr for SessionHandle {
    type Err = InvalidSessionHandle;

    /// Parses 64 lowercase hex digits (the form `Display` writes). By
    /// hand: a hex crate for one fixed-size decode is not worth a
    /// dependency.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.as_bytes();
        if text.len() != 64 {
            return Err(InvalidSessionHandle::Length(text.len()));
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(InvalidSessionHandle::Digit),
        };
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
            *o = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Ok(SessionHandle(out))
    }
}

impl serde::Serialize for SessionHandle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SessionHandle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a record read back names its session by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Named {
    /// The session id (the compact record layout 1).
    Id(SessionId),
    /// Its handle only (layout 2).
    Handle(SessionHandle),
}

impl Named {
    /// The handle, computed from the id where the record carries the id.
    pub(crate) fn handle(&self) -> SessionHandle {
        match self {
            Named::Id(id) => id.handle(),
            Named::Handle(h) => *h,
        }
    }
}

/// A `String` from bytes this module built from an ASCII table.
fn ascii_string(bytes: &[u8]) -> String {
    std::str::from_utf8(bytes)
        .expect("built from an ASCII alphabet")
        .to_owned()
}

impl PartialEq for SessionId {
    /// Constant-time: the 32 bytes are compared as four words folded with
    /// OR, without an early exit.
    fn eq(&self, other: &Self) -> bool {
        let mut diff = 0u64;
        for (a, b) in self.0.chunks_exact(8).zip(other.0.chunks_exact(8)) {
            let a = u64::from_ne_bytes(a.try_into().expect("8 bytes"));
            let b = u64::from_ne_bytes(b.try_into().expect("8 bytes"));
            diff |= a ^ b;
        }
        std::hint::black_box(diff) == 0
    }
}
impl Eq for SessionId {}

impl std::hash::Hash for SessionId {
    /// Hashes the first 64 bits only: ids are uniformly random, so those
    /// bits are as good a hash input as all 256, at a quarter of the cost.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let head: [u8; 8] = self.0[..8].try_into().expect("8 bytes");
        state.write_u64(u64::from_ne_bytes(head));
    }
}

/// Marks characters outside the base64url alphabet in [`DECODE`].
const INVALID: u8 = 0x80;

/// The base64url alphabet.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url character → its 6-bit value, or [`INVALID`].
const DECODE: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// A cookie value or an encoded id for `Debug`: its first four characters
/// and its length, as [`SessionId`]'s own `Debug` shows, so that a value
/// that works as a credential never reaches a log whole.
pub(crate) struct Redacted<'a>(pub(crate) &'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = self.0.get(..4).unwrap_or("");
        write!(f, "\"{head}…\" ({} bytes)", self.0.len())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Four characters: enough to tell two ids apart in a debugger, far
        // too few to be of use to anyone reading a log.
        let enc = self.encode();
        write!(f, "SessionId({}…)", &enc[..4])
    }
}

impl serde::Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl<'de> serde::Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        SessionId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_carries_a_whole_cookie_value_id_or_flash_text() {
        use crate::flash::FlashMessage;
        use crate::http::CookieLookup;
        use crate::store::{MetaChanges, Save, SaveOutcome};
        use crate::{CookieAction, Record};
        let value = SessionId::generate().encode();
        let shown = [
            format!(
                "{:?}",
                CookieAction::Set {
                    value: value.clone(),
                    max_age: std::time::Duration::from_secs(1),
                }
            ),
            format!("{:?}", SaveOutcome::Saved(value.clone())),
            format!("{:?}", CookieLookup::Found(&value)),
        ];
        for s in &shown {
            assert!(!s.contains(&value[..8]), "{s}");
            assert!(s.contains(&value[..4]), "{s}");
        }
        let flash = [FlashMessage {
            key: "notice".into(),
            value: "secret-flash-text".into(),
        }];
        let record = Record::new(
            SessionId::generate(),
            "secret-data".to_string(),
            std::time::SystemTime::now(),
            &crate::expiry::ExpiryPolicy::default(),
        );
        let base = "secret-base".to_string();
        let old = SessionId::generate();
        let save = Save::regenerate(&record, old, Some(&base)).with_changes(MetaChanges {
            flash_taken: &flash,
            ..MetaChanges::NONE
        });
        let s = format!("{save:?}");
        for secret in [
            "secret-flash-text",
            "secret-data",
            "secret-base",
            &record.id.encode()[..8],
            &old.encode()[..8],
        ] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
        assert!(format!("{:?}", Redacted("ab")).contains("2 bytes"));
    }
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    #[test]
    fn generated_ids_round_trip_and_differ() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(&a.encode()).unwrap(), a);
    }

    #[test]
    fn hostile_values_are_rejected_before_decoding() {
        for bad in [
            "",
            "*",
            "a\r\nb",
            &"A".repeat(10_000),
            &"*".repeat(43),
            &"é".repeat(21),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert!(SessionId::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn non_canonical_trailing_bits_are_rejected() {
        let id = SessionId::generate().encode();
        let mut s = id[..42].to_string();
        // Last char of a 43-char encoding carries only 4 data bits; 'B' sets a
        // low padding bit when the preceding bits decode to zero.
        s.push('B');
        let canonical = SessionId::parse(&s).map(|v| v.encode() == s);
        assert!(matches!(canonical, Err(_) | Ok(true)));
    }

    #[test]
    fn equality_compares_every_byte() {
        let a = SessionId::generate();
        for i in 0..ID_BYTES {
            let mut b = *a.as_bytes();
            b[i] ^= 1;
            assert_ne!(a, SessionId::from_bytes(b), "byte {i}");
        }
        assert_eq!(a, SessionId::from_bytes(*a.as_bytes()));
    }

    proptest::proptest! {
        /// The hand-written decoder accepts exactly what the `base64` crate's
        /// strict decoder accepts, with the same bytes.
        #[test]
        fn parse_agrees_with_the_base64_crate(
            text in "[A-Za-z0-9_=*.+/-]{41,45}",
            raw in proptest::array::uniform32(0u8..),
        ) {
            let reference = |t: &str| -> Option<[u8; ID_BYTES]> {
                let mut out = [0u8; ID_BYTES];
                (t.len() == ENCODED_ID_LEN && t.bytes().all(|b| DECODE[b as usize] != INVALID))
                    .then_some(())?;
                match URL_SAFE_NO_PAD.decode_slice(t, &mut out) {
                    Ok(ID_BYTES) => Some(out),
                    _ => None,
                }
            };
            let ours = |t: &str| SessionId::parse(t).ok().map(|id| *id.as_bytes());
            proptest::prop_assert_eq!(ours(&text), reference(&text));
            let encoded = SessionId::from_bytes(raw).encode();
            proptest::prop_assert_eq!(&encoded, &URL_SAFE_NO_PAD.encode(raw));
            proptest::prop_assert_eq!(ours(&encoded), Some(raw));
            // Every last character: only the canonical ones decode.
            for c in DECODE_ALPHABET.chars() {
                let t = format!("{}{c}", &encoded[..42]);
                proptest::prop_assert_eq!(ours(&t), reference(&t));
            }
        }
    }

    const DECODE_ALPHABET: &str =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    proptest::proptest! {
        /// A handle's text parses exactly when it is 64 lowercase hex
        /// digits (checked against a reference decoder), never panics on
        /// anything else, and round-trips its bytes.
        #[test]
        fn handle_text_parses_only_64_lowercase_hex_digits(
            text in proptest::string::string_regex("[0-9a-fA-F\\-_ é\\x00]{0,70}").unwrap(),
            raw in proptest::array::uniform32(0u8..),
        ) {
            let reference = |t: &str| -> Option<[u8; 32]> {
                let ok = t.len() == 64
                    && t.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
                ok.then(|| {
                    let mut out = [0u8; 32];
                    for (i, o) in out.iter_mut().enumerate() {
                        *o = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).unwrap();
                    }
                    out
                })
            };
            let ours = |t: &str| t.parse::<SessionHandle>().ok().map(|h| *h.as_bytes());
            proptest::prop_assert_eq!(ours(&text), reference(&text));
            let handle = SessionHandle::from_bytes(raw);
            let shown = handle.to_string();
            proptest::prop_assert_eq!(ours(&shown), Some(raw));
            proptest::prop_assert_eq!(ours(&shown.to_uppercase()), reference(&shown.to_uppercase()));
            let json = serde_json::to_string(&handle).unwrap();
            proptest::prop_assert_eq!(serde_json::from_str::<SessionHandle>(&json).unwrap(), handle);
        }
    }

    #[test]
    fn a_handle_of_the_right_length_with_one_bad_digit_is_refused() {
        let text = SessionId::generate().handle().to_string();
        for at in [0, 31, 63] {
            for bad in ["G", "A", "-", " "] {
                let mut t = text.clone();
                t.replace_range(at..at + 1, bad);
                assert_eq!(
                    t.parse::<SessionHandle>(),
                    Err(InvalidSessionHandle::Digit),
                    "{t}"
                );
            }
        }
        assert_eq!(
            text[..63].parse::<SessionHandle>(),
            Err(InvalidSessionHandle::Length(63))
        );
        // A multi-byte character: 64 bytes but not 64 digits, and no panic
        // slicing inside it.
        let t = format!("é{}", &text[..62]);
        assert_eq!(t.len(), 64);
        assert_eq!(t.parse::<SessionHandle>(), Err(InvalidSessionHandle::Digit));
    }

    #[test]
    fn storage_key_is_a_hash_not_the_id() {
        let id = SessionId::generate();
        let key = id.storage_key();
        assert_eq!(key.len(), 64);
        assert!(!key.contains(&id.encode()));
        // Lower-case hex of SHA-256, as sha2 formats it.
        assert_eq!(key, format!("{:x}", Sha256::digest(id.as_bytes())));
    }
}
