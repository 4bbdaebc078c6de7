//! Session identifiers: 256 random bits from the operating system's CSPRNG.
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

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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
    /// The value does not have the length of an encoded id.
    #[error("session id must be {ENCODED_ID_LEN} characters, got {0}")]
    Length(usize),
    /// The value holds characters outside the base64url alphabet.
    #[error("session id holds characters outside the base64url alphabet")]
    Alphabet,
}

impl SessionId {
    /// A fresh id from the operating system's CSPRNG.
    ///
    /// # Panics
    /// Only if the operating system cannot provide randomness at all, in which
    /// case no secure session can be issued and continuing would be worse.
    pub fn generate() -> Self {
        let mut bytes = [0u8; ID_BYTES];
        getrandom::fill(&mut bytes).expect("the OS random number generator is unavailable");
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

    /// Parses the cookie form. Length and alphabet are checked before decoding.
    pub fn parse(text: &str) -> Result<Self, InvalidSessionId> {
        if text.len() != ENCODED_ID_LEN {
            return Err(InvalidSessionId::Length(text.len()));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(InvalidSessionId::Alphabet);
        }
        let mut bytes = [0u8; ID_BYTES];
        // 43 chars of the right alphabet can still carry non-zero trailing
        // bits; the decoder rejects those, which keeps the encoding canonical.
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(ID_BYTES) => Ok(SessionId(bytes)),
            _ => Err(InvalidSessionId::Alphabet),
        }
    }

    /// The cookie form: 43 characters of unpadded base64url.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// SHA-256 of the id, hex encoded: what server-side stores use as a key,
    /// so that a dump of the store yields no usable cookie value.
    pub fn storage_key(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = Sha256::digest(self.0);
        let mut out = String::with_capacity(64);
        for b in digest {
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
        out
    }
}

impl PartialEq for SessionId {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for SessionId {}

impl std::hash::Hash for SessionId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
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
    fn storage_key_is_a_hash_not_the_id() {
        let id = SessionId::generate();
        let key = id.storage_key();
        assert_eq!(key.len(), 64);
        assert!(!key.contains(&id.encode()));
    }
}
