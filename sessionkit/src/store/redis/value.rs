//! How a session is laid out in one Redis string value.
//!
//! `sk1:<version>:<owner hash>:<payload>`: a short plain header that the Lua
//! scripts read (to compare versions and keep the owner index in step without
//! decoding anything), then the payload [`PayloadCodec::encode_stored`]
//! writes after it.
//!
//! By default the payload is the compact record layout of `crate::frame`
//! (layout 2): the session's handle (the id's SHA-256, the key's own
//! suffix; never the id, so a dump yields no working cookie), the times and
//! the version as little-endian integers, owner and binding fingerprint as
//! length-prefixed UTF-8, then the flash messages and the data as JSON.
//! Nothing in it is encrypted. Layout 1 (the raw id in place of the handle)
//! and payloads that start with `{` (whole-record JSON) were written by
//! earlier releases; they still decode. With feature `crypto` the store can use the shared
//! [`crate::codec::Codec`] instead (compression, AEAD sealing), chosen with
//! `RedisStoreBuilder::codec`.

use crate::error::StoreError;
use crate::id::Named;
use crate::id::SessionHandle;
use crate::record::{Record, SessionData};

/// The header's fixed start.
const MAGIC: &[u8] = b"sk1:";

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

/// The whole stored value: header, then `payload` (as
/// [`PayloadCodec::encode_stored`] builds it).
#[cfg(test)]
pub(super) fn build(version: u64, owner: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = header(version, owner, payload.len());
    out.extend_from_slice(payload);
    out
}

/// A buffer holding the header of a stored value, with room for
/// `payload_len` more bytes.
fn header(version: u64, owner: &str, payload_len: usize) -> Vec<u8> {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(version).as_bytes();
    let mut out = Vec::with_capacity(MAGIC.len() + digits.len() + owner.len() + 2 + payload_len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(digits);
    out.push(b':');
    out.extend_from_slice(owner.as_bytes());
    out.push(b':');
    out
}

/// Splits a stored value into header and payload. Any malformed value is a
/// [`StoreError::Decode`] that quotes nothing of the value.
pub(super) fn parse(value: &[u8]) -> Result<Stored<'_>, StoreError> {
    let bad = || StoreError::Decode("stored value has no valid sessionkit header".into());
    let rest = value.strip_prefix(MAGIC).ok_or_else(bad)?;
    let colon = rest.iter().position(|&b| b == b':').ok_or_else(bad)?;
    let digits = &rest[..colon];
    // Up to u64::MAX (20 digits); a longer or larger number fails to parse.
    // Only the form the store writes: the scripts compare the version and
    // owner as strings, so `007` (read here as 7) or an upper-case owner
    // hash would never match there, and every update of such a value would
    // run into a version conflict until the merge retries ran out.
    let canonical = digits == b"0" || digits.first().is_some_and(|&d| d != b'0');
    if digits.is_empty()
        || digits.len() > 20
        || !canonical
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return Err(bad());
    }
    let version = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(bad)?;
    let rest = &rest[colon + 1..];
    let colon = rest.iter().position(|&b| b == b':').ok_or_else(bad)?;
    let owner = &rest[..colon];
    let lower_hex = |b: &u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
    if !(owner.is_empty() || owner.len() == 64 && owner.iter().all(lower_hex)) {
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
    /// The whole value to store for `record`: the header (`version`, the
    /// owner's hash or `""`), then the encoded record. Built here, not by
    /// the scripts: a Lua concatenation copied the payload inside Redis on
    /// every save (see `update.lua` for what that cost).
    ///
    /// The record names the session by `handle` (the id's SHA-256, as in
    /// the key), never by its id, with a codec or without: a value read out
    /// of Redis (a replica, a backup, `MONITOR`) gives away no working
    /// cookie, even when the codec only compresses.
    pub fn encode_stored<T: SessionData>(
        &self,
        record: &Record<T>,
        handle: &SessionHandle,
        version: u64,
        write_id: u64,
        owner: &str,
    ) -> Result<Vec<u8>, StoreError> {
        #[cfg(feature = "crypto")]
        if let Some(codec) = &self.codec {
            let sealed = codec.encode_record_handle_as(record, handle, version, write_id)?;
            let mut out = header(version, owner, sealed.len());
            out.extend_from_slice(&sealed);
            return Ok(out);
        }
        // The plain layout is written straight after the header: one buffer.
        let mut out = header(version, owner, 160);
        crate::frame::write_handle(record, handle, version, write_id, &mut out)?;
        Ok(out)
    }

    /// Decodes the payload that [`PayloadCodec::encode_stored`] wrote after
    /// the header, or an earlier release wrote. Errors never quote the value.
    pub fn decode<T: SessionData>(&self, payload: &[u8]) -> Result<Record<T, Named>, StoreError> {
        #[cfg(feature = "crypto")]
        if let Some(codec) = &self.codec {
            return codec.decode_record_named(payload);
        }
        decode_payload(payload)
    }
}

/// Encodes a record for the plain payload alone: the compact record layout
/// (metadata in binary, the data and flash messages as JSON; see
/// `crate::frame`), as [`PayloadCodec::encode_stored`] writes it after the
/// header.
#[cfg(test)]
pub(super) fn encode_payload<T: SessionData>(record: &Record<T>) -> Result<Vec<u8>, StoreError> {
    let mut buf = Vec::with_capacity(160);
    crate::frame::write_handle(record, &record.id.handle(), record.version, 0, &mut buf)?;
    Ok(buf)
}

/// Decodes the plain payload ([`PayloadCodec::encode_stored`] without a
/// codec: named by handle), one of the compact layout named by id, or a
/// whole-record JSON payload (both written by earlier releases; JSON starts
/// with `{`, which the compact layout never does). Errors never quote the
/// value.
pub(super) fn decode_payload<T: SessionData>(
    payload: &[u8],
) -> Result<Record<T, Named>, StoreError> {
    if payload.first() != Some(&b'{') {
        return crate::frame::read_named(payload).map_err(|reason| {
            StoreError::Decode(format!("stored session does not decode ({reason})"))
        });
    }
    let record: Record<T> = serde_json::from_slice(payload).map_err(|e| {
        StoreError::Decode(format!(
            "stored session is not valid JSON for this data type ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let id = Named::Id(record.id);
    Ok(record.with_id(id))
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
        assert_eq!(parse(b"sk1:1::").unwrap().version, 1);
        assert_eq!(parse(b"sk1:0::").unwrap().version, 0);
        assert_eq!(parse(b"sk1:10::").unwrap().version, 10);
        assert!(anon.owner.is_empty());
        assert_eq!(anon.payload, b"payload:with:colons");
    }

    #[test]
    fn a_built_value_parses_back_into_its_parts() {
        let owner = "f".repeat(64);
        for (version, owner) in [(1, ""), (42, owner.as_str()), (u64::MAX, "")] {
            let built = build(version, owner, b"pay:load");
            let s = parse(&built).unwrap();
            assert_eq!(
                (s.version, s.owner, s.payload),
                (version, owner.as_bytes(), &b"pay:load"[..])
            );
        }
        assert_eq!(build(1, "", b"x"), b"sk1:1::x");
    }

    #[test]
    fn an_encoded_value_is_its_header_then_a_payload_that_decodes() {
        let mut record = Record::new(
            crate::SessionId::generate(),
            7u32,
            std::time::SystemTime::now(),
            &crate::expiry::ExpiryPolicy::default(),
        );
        record.owner = Some("ada".into());
        let owner = "b".repeat(64);
        let stored = PayloadCodec::default()
            .encode_stored(&record, &record.id.handle(), 9, 0, &owner)
            .unwrap();
        let s = parse(&stored).unwrap();
        assert_eq!((s.version, s.owner), (9, owner.as_bytes()));
        // The payload carries the version written, as the header does.
        let mut written = record.clone();
        written.version = 9;
        assert_eq!(s.payload, encode_payload(&written).unwrap());
        let back: Record<u32, Named> = PayloadCodec::default().decode(s.payload).unwrap();
        assert_eq!((back.id, back.data), (Named::Handle(record.id.handle()), 7));
    }

    #[test]
    fn hostile_values_are_decode_errors_that_quote_nothing() {
        let long = format!("sk1:{}:", "9".repeat(10_000));
        let upper_owner = format!("sk1:1:{}:x", "A".repeat(64));
        for bad in [
            &b""[..],
            b"sk1:007::x",
            b"sk1:00::x",
            upper_owner.as_bytes(),
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
        // The compact layout of earlier releases named the session by id.
        let mut by_id = Vec::new();
        crate::frame::write(&record, record.version, &mut by_id).unwrap();
        for payload in [compact, json, by_id] {
            let back: Record<Vec<u32>, Named> = decode_payload(&payload).unwrap();
            assert_eq!(
                (back.id.handle(), back.data, back.owner),
                (record.id.handle(), vec![1, 2], record.owner.clone())
            );
        }
    }
}
