//! How a session is laid out in one Redis string value.
//!
//! `sk1:<version>:<owner hash>:<payload>`: a short plain header that the Lua
//! scripts read (to compare versions and keep the owner index in step without
//! decoding anything), then the payload produced by [`PayloadCodec::encode`].
//!
//! The payload is JSON by default; with feature `crypto` the store can use
//! the shared [`crate::codec::Codec`] instead (compression, AEAD sealing),
//! chosen with `RedisStoreBuilder::codec`.

use crate::error::StoreError;
use crate::record::{Record, SessionData};

/// The header's fixed start.
const MAGIC: &[u8] = b"sk1:";

/// The whole header of a new session without an owner (version 1): what
/// `create.lua` writes for one, and what the store writes itself when it
/// creates one without the script.
pub(super) const ANONYMOUS_V1: &[u8] = b"sk1:1::";

/// The parts of a stored value.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Stored<'a> {
    /// The version the scripts maintain (authoritative over the payload's).
    pub version: u64,
    /// SHA-256 hex of the owner, empty when the session has none.
    pub owner: &'a [u8],
    /// The encoded record.
    pub payload: &'a [u8],
}

/// Splits a stored value into header and payload. Any malformed value is a
/// [`StoreError::Decode`] that quotes nothing of the value.
pub(super) fn parse(value: &[u8]) -> Result<Stored<'_>, StoreError> {
    let bad = || StoreError::Decode("stored value has no valid sessionkit header".into());
    let rest = value.strip_prefix(MAGIC).ok_or_else(bad)?;
    let colon = rest.iter().position(|&b| b == b':').ok_or_else(bad)?;
    let digits = &rest[..colon];
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let version = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(bad)?;
    let rest = &rest[colon + 1..];
    let colon = rest.iter().position(|&b| b == b':').ok_or_else(bad)?;
    let owner = &rest[..colon];
    if !(owner.is_empty() || owner.len() == 64 && owner.iter().all(u8::is_ascii_hexdigit)) {
        return Err(bad());
    }
    Ok(Stored {
        version,
        owner,
        payload: &rest[colon + 1..],
    })
}

/// How payloads are encoded: plain JSON, or (feature `crypto`) the shared
/// [`crate::codec::Codec`] with compression and/or sealing under the key
/// ring's store-data subkey.
#[derive(Clone, Default)]
pub(super) struct PayloadCodec {
    #[cfg(feature = "crypto")]
    pub codec: Option<std::sync::Arc<crate::codec::Codec>>,
}

impl PayloadCodec {
    /// Encodes a record for storage.
    pub fn encode<T: SessionData>(&self, record: &Record<T>) -> Result<Vec<u8>, StoreError> {
        #[cfg(feature = "crypto")]
        if let Some(codec) = &self.codec {
            return codec.encode_record(record);
        }
        encode_payload(record)
    }

    /// Decodes what [`PayloadCodec::encode`] wrote. Errors never quote the value.
    pub fn decode<T: SessionData>(&self, payload: &[u8]) -> Result<Record<T>, StoreError> {
        #[cfg(feature = "crypto")]
        if let Some(codec) = &self.codec {
            return codec.decode_record(payload);
        }
        decode_payload(payload)
    }
}

/// Encodes a record for the plain payload: the compact record layout
/// (metadata in binary, the data and flash messages as JSON; see
/// `crate::frame`).
pub(super) fn encode_payload<T: SessionData>(record: &Record<T>) -> Result<Vec<u8>, StoreError> {
    let mut buf = Vec::with_capacity(160);
    crate::frame::write(record, record.version, &mut buf)?;
    Ok(buf)
}

/// Decodes what [`encode_payload`] wrote, or a whole-record JSON payload
/// written by earlier releases (it starts with `{`, which the compact
/// layout never does). Errors never quote the value.
pub(super) fn decode_payload<T: SessionData>(payload: &[u8]) -> Result<Record<T>, StoreError> {
    if payload.first() != Some(&b'{') {
        return crate::frame::read(payload).map_err(|reason| {
            StoreError::Decode(format!("stored session does not decode ({reason})"))
        });
    }
    serde_json::from_slice(payload).map_err(|e| {
        StoreError::Decode(format!(
            "stored session is not valid JSON for this data type ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_value_splits_into_version_owner_and_payload() {
        let owner = "a".repeat(64);
        let v = format!("sk1:7:{owner}:{{\"x\":1}}");
        let s = parse(v.as_bytes()).unwrap();
        assert_eq!(s.version, 7);
        assert_eq!(s.owner, owner.as_bytes());
        assert_eq!(s.payload, b"{\"x\":1}");
        let anon = parse(b"sk1:1::payload:with:colons").unwrap();
        assert_eq!(parse(ANONYMOUS_V1).unwrap().version, 1);
        assert!(anon.owner.is_empty());
        assert_eq!(anon.payload, b"payload:with:colons");
    }

    #[test]
    fn hostile_values_are_decode_errors_that_quote_nothing() {
        let long = format!("sk1:{}:", "9".repeat(10_000));
        for bad in [
            &b""[..],
            b"sk1",
            b"sk1:",
            b"sk1::",
            b"sk1:-1::x",
            b"sk1:1",
            b"sk1:1:zz:x",
            b"sk1:99999999999999999999::x",
            b"sk0:1::x",
            b"\xff\xfe",
            long.as_bytes(),
        ] {
            match parse(bad) {
                Err(StoreError::Decode(msg)) => assert!(!msg.contains("sk1:")),
                other => panic!("accepted a bad value: {other:?}"),
            }
        }
    }

    #[test]
    fn undecodable_payloads_do_not_leak_their_content() {
        let err = decode_payload::<u32>(b"{\"data\":\"top-secret\"}").unwrap_err();
        assert!(matches!(err, StoreError::Decode(_)));
        assert!(!err.to_string().contains("top-secret"));
        // Same in the compact layout: a record whose data is not a u32.
        let record = Record::new(
            crate::SessionId::generate(),
            "top-secret".to_string(),
            std::time::SystemTime::now(),
            &crate::expiry::ExpiryPolicy::default(),
        );
        let compact = encode_payload(&record).unwrap();
        let err = decode_payload::<u32>(&compact).unwrap_err();
        assert!(matches!(err, StoreError::Decode(_)));
        assert!(!err.to_string().contains("top-secret"));
    }

    #[test]
    fn payloads_round_trip_in_both_layouts() {
        let mut record = Record::new(
            crate::SessionId::generate(),
            vec![1u32, 2],
            std::time::SystemTime::now(),
            &crate::expiry::ExpiryPolicy::default(),
        );
        record.owner = Some("ada".into());
        let compact = encode_payload(&record).unwrap();
        let json = serde_json::to_vec(&record).unwrap();
        assert!(compact.len() < json.len());
        for payload in [compact, json] {
            let back: Record<Vec<u32>> = decode_payload(&payload).unwrap();
            assert_eq!(
                (back.id, back.data, back.owner),
                (record.id, vec![1, 2], record.owner.clone())
            );
        }
    }
}
