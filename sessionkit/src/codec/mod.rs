//! The codec: how a session becomes bytes (for a store) or a sealed cookie, and back.
//!
//! One pipeline, three steps, each optional after the first:
//! 1. **format**: serde into JSON ([`Format`]);
//! 2. **compression**: gzip above a size threshold ([`Compression`], default
//!    256 bytes), kept only when it actually shrinks the value;
//! 3. **sealing**: AEAD with a [`KeyRing`] subkey for one [`KeyPurpose`]
//!    ([`envelope`] has the byte layout and the nonce limits).
//!
//! Decoding runs backwards and is bounded: input longer than
//! [`CodecBuilder::max_encoded_len`] is refused before any work, and gzip is
//! never inflated past [`CodecBuilder::max_decoded_len`]. A sealing codec
//! authenticates a value before inflating it; an unsealed one (such as
//! `Codec::default()`) inflates the bytes it is given as they are, so there
//! the size bound is the only protection against a gzip bomb. Every failure
//! is one opaque [`StoreError::Decode`]; the reason goes to `tracing` at
//! debug level.
//!
//! The cookie store ([`crate::store::cookie`]) seals with
//! [`KeyPurpose::CookieSealing`] bound to the cookie name. Server-side stores
//! use the same type for their values; their "encrypt stored data" option is
//! [`CodecBuilder::seal`] with [`KeyPurpose::StoreData`]:
//!
//! ```
//! use sessionkit::codec::{Codec, Compression};
//! use sessionkit::keys::{KeyPurpose, KeyRing};
//! use sessionkit::{Record, SessionId};
//! use sessionkit::expiry::ExpiryPolicy;
//!
//! let ring = KeyRing::builder().current(1, KeyRing::generate_secret()).build().unwrap();
//! let codec = Codec::builder()
//!     .compression(Compression::Gzip { threshold: 256 })
//!     .seal(&ring, KeyPurpose::StoreData)
//!     .context("redis")              // bind values to this use
//!     .build();
//!
//! let record = Record::new(SessionId::generate(), vec![1u32, 2, 3],
//!                          std::time::SystemTime::now(), &ExpiryPolicy::default());
//! let bytes = codec.encode(&record).unwrap();
//! let back: Record<Vec<u32>> = codec.decode(&bytes).unwrap();
//! assert_eq!(back.data, vec![1, 2, 3]);
//! assert!(codec.decode::<Record<Vec<u32>>>(&bytes[1..]).is_err());
//!
//! // Without sealing: JSON behind a 3-byte header, readable in `redis-cli`.
//! let plain = Codec::default();
//! let bytes = plain.encode(&record).unwrap();
//! assert_eq!(&bytes[3..4], b"{");
//! ```
//!
//! # Plain layout
//! An unsealed value is `[version = 1][algorithm = 0][flags]` then the
//! (possibly gzip-compressed) serialized value. A codec that seals refuses
//! plain values and the reverse: turning encryption on or off makes existing
//! values undecodable (their sessions start afresh), never silently trusted.
//!
//! # Compression and secrets
//! Compressing before encrypting lets the ciphertext length depend on the
//! content. If an attacker can put chosen text into a session that also holds
//! a secret and watch the cookie's length, they may learn about the secret
//! (the BREACH family). Keep secrets out of such sessions or use
//! [`Compression::None`].

use std::borrow::Cow;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::StoreError;
use crate::keys::{KeyId, KeyPurpose, KeyRing};

mod compress;
pub mod envelope;

pub use envelope::Algorithm;
use envelope::{Sealer, FLAG_BYTES, FLAG_GZIP, FLAG_RECORD, KNOWN_FLAGS, VERSION};

use crate::frame;
use crate::record::Record;

/// Length of the header of an unsealed value.
const PLAIN_HEADER_LEN: usize = 3;

/// The serialization format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Format {
    /// JSON (serde_json): readable, and works with every serde feature
    /// (`flatten`, `skip_serializing_if`, untagged enums).
    #[default]
    Json,
}

/// Whether and when to compress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Never.
    None,
    /// Gzip serialized values longer than `threshold` bytes (kept only if smaller).
    Gzip {
        /// Size in bytes above which compression is tried.
        threshold: usize,
    },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip { threshold: 256 }
    }
}

/// Encodes values to bytes and back (see the [module docs](self)). Build it
/// once; it is immutable and `Send + Sync`.
pub struct Codec {
    format: Format,
    compression: Compression,
    gzip_level: u32,
    sealer: Option<Sealer>,
    max_encoded_len: usize,
    max_decoded_len: usize,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("format", &self.format)
            .field("compression", &self.compression)
            .field("gzip_level", &self.gzip_level)
            .field("sealed", &self.sealer.as_ref().map(|s| s.algorithm()))
            .field("max_encoded_len", &self.max_encoded_len)
            .field("max_decoded_len", &self.max_decoded_len)
            .finish()
    }
}

impl Default for Codec {
    /// JSON, gzip above 256 bytes, not sealed, 1 MiB limits.
    fn default() -> Self {
        Codec::builder().build()
    }
}

/// What [`Codec::decode_detailed`] found besides the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// The key that sealed the value (`None` for unsealed values).
    pub key_id: Option<KeyId>,
    /// Whether that key is not the ring's current one: write the value again
    /// to re-seal it under the current key.
    pub stale_key: bool,
}

/// Logs why a value was rejected (debug level) and returns the one opaque error.
fn logged<V>(result: Result<V, &'static str>) -> Result<V, StoreError> {
    result.map_err(|reason| {
        tracing::debug!(reason, "session value rejected");
        StoreError::Decode("session value rejected".into())
    })
}

impl Codec {
    /// Starts a builder: JSON, gzip above 256 bytes, not sealed, 1 MiB limits.
    pub fn builder<'a>() -> CodecBuilder<'a> {
        CodecBuilder {
            format: Format::Json,
            compression: Compression::default(),
            gzip_level: compress::DEFAULT_LEVEL,
            seal: None,
            algorithm: Algorithm::default(),
            context: Vec::new(),
            max_encoded_len: 1 << 20,
            max_decoded_len: 1 << 20,
        }
    }

    /// Whether values are sealed.
    pub fn is_sealed(&self) -> bool {
        self.sealer.is_some()
    }

    /// The longest input [`Codec::decode`] accepts.
    pub fn max_encoded_len(&self) -> usize {
        self.max_encoded_len
    }

    /// Serializes, maybe compresses, maybe seals. Fails when the value does
    /// not serialize or the result is over `max_encoded_len` (it could not
    /// be decoded again, so it is refused now rather than lost later).
    pub fn encode<V: Serialize + ?Sized>(&self, value: &V) -> Result<Vec<u8>, StoreError> {
        self.encode_with(0, |buf| match self.format {
            Format::Json => serde_json::to_writer(buf, value)
                .map_err(|e| StoreError::Encode(format!("serialization failed: {e}"))),
        })
    }

    /// Encodes a session record in the compact record layout: its metadata
    /// (id, deadlines, version, owner) in fixed binary fields and only the
    /// data and flash messages as JSON, about 200 bytes fewer than
    /// [`Codec::encode`] gives for the same record, and faster to decode.
    /// Read it back with [`Codec::decode_record`].
    pub fn encode_record<T: Serialize>(&self, record: &Record<T>) -> Result<Vec<u8>, StoreError> {
        self.encode_record_as(record, record.version)
    }

    /// [`Codec::encode_record`] with `version` written in place of the
    /// record's own (a save writes the next version without a copy).
    pub(crate) fn encode_record_as<T: Serialize>(
        &self,
        record: &Record<T>,
        version: u64,
    ) -> Result<Vec<u8>, StoreError> {
        self.encode_with(FLAG_RECORD, |buf| frame::write(record, version, buf))
    }

    /// [`Codec::encode_record_as`] naming the session by `handle` instead
    /// of its id (layout 2: what a server-side store writes, so that not
    /// even a compressed-only value carries the id). Read it back with
    /// [`Codec::decode_record_named`].
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // the Redis store's
    pub(crate) fn encode_record_handle_as<T: Serialize>(
        &self,
        record: &Record<T>,
        handle: &crate::id::SessionHandle,
        version: u64,
        write_id: u64,
    ) -> Result<Vec<u8>, StoreError> {
        self.encode_with(FLAG_RECORD, |buf| {
            frame::write_handle(record, handle, version, write_id, buf)
        })
    }

    /// Decodes a record named by its id or its handle (see
    /// [`Codec::encode_record_handle_as`]).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // the Redis store's
    pub(crate) fn decode_record_named<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
    ) -> Result<Record<T, frame::Named>, StoreError> {
        logged(self.try_decode(Cow::Borrowed(bytes), |flags, body| {
            if flags & FLAG_BYTES != 0 {
                Err("raw bytes: read them with decode_bytes")
            } else if flags & FLAG_RECORD != 0 {
                frame::read_named(body)
            } else {
                self.parse::<Record<T>>(body).map(|r| {
                    let id = frame::Named::Id(r.id);
                    r.with_id(id)
                })
            }
        }))
        .map(|(r, _)| r)
    }

    /// Compresses (as configured) and seals raw bytes, for secrets that are
    /// not sessions but should use the same keys and envelope: a CSRF token,
    /// a signed download link, an e-mail confirmation. Read them back with
    /// [`Codec::decode_bytes`]; the envelope marks them as bytes, so they
    /// never decode as a typed value or a record, nor those as bytes. Give
    /// each use its own [`CodecBuilder::context`] so one kind of token cannot
    /// stand in for another.
    ///
    /// ```
    /// use sessionkit::codec::Codec;
    /// use sessionkit::keys::{KeyPurpose, KeyRing};
    ///
    /// let ring = KeyRing::builder().current(1, KeyRing::generate_secret()).build().unwrap();
    /// let links = Codec::builder()
    ///     .seal(&ring, KeyPurpose::StoreData)
    ///     .context("download-link")
    ///     .build();
    /// let token = links.encode_bytes(b"report-2026-11.pdf").unwrap();
    /// assert_eq!(links.decode_bytes(&token).unwrap(), b"report-2026-11.pdf");
    ///
    /// let other = Codec::builder().seal(&ring, KeyPurpose::StoreData).context("invite").build();
    /// assert!(other.decode_bytes(&token).is_err());
    /// assert!(links.decode::<Vec<u8>>(&token).is_err());
    /// ```
    pub fn encode_bytes(&self, bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.encode_with(FLAG_BYTES, |buf| {
            buf.extend_from_slice(bytes);
            Ok(())
        })
    }

    /// Opens and inflates a value written by [`Codec::encode_bytes`]. Every
    /// failure (including a typed value or a record given here) is the one
    /// opaque [`StoreError::Decode`], as for [`Codec::decode`].
    pub fn decode_bytes(&self, bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
        logged(self.try_decode(Cow::Borrowed(bytes), |flags, body| {
            if flags & (FLAG_BYTES | FLAG_RECORD) != FLAG_BYTES {
                return Err("not a value written by encode_bytes");
            }
            Ok(body.to_vec())
        }))
        .map(|(v, _)| v)
    }

    /// Serializes with `write` behind room for the header, then compresses
    /// and seals as configured.
    fn encode_with(
        &self,
        mut flags: u8,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), StoreError>,
    ) -> Result<Vec<u8>, StoreError> {
        // Serialize straight into the output buffer, behind room for the
        // header (and nonce), so sealing needs no copy.
        let start = self
            .sealer
            .as_ref()
            .map_or(PLAIN_HEADER_LEN, Sealer::prefix_len);
        // Room for a small value and the tag up front: no reallocation while
        // serializing a typical session, nor when the tag is appended.
        let mut buf = Vec::with_capacity(start + 256 + envelope::TAG_LEN);
        buf.resize(start, 0);
        write(&mut buf)?;
        let body_len = buf.len() - start;
        if body_len > self.max_decoded_len {
            return Err(StoreError::Encode(format!(
                "serialized session is {body_len} bytes, over the {}-byte limit",
                self.max_decoded_len
            )));
        }
        if let Compression::Gzip { threshold } = self.compression {
            if body_len > threshold {
                if let Some(z) = compress::gzip(&buf[start..], self.gzip_level) {
                    buf.truncate(start);
                    buf.extend_from_slice(&z);
                    flags |= FLAG_GZIP;
                }
            }
        }
        let out = match &self.sealer {
            Some(sealer) => sealer
                .seal_in_place(flags, buf)
                .ok_or_else(|| StoreError::Encode("value too large to seal".into()))?,
            None => {
                buf[..PLAIN_HEADER_LEN].copy_from_slice(&[VERSION, 0, flags]);
                buf
            }
        };
        if out.len() > self.max_encoded_len {
            return Err(StoreError::Encode(format!(
                "encoded session is {} bytes, over the {}-byte limit",
                out.len(),
                self.max_encoded_len
            )));
        }
        Ok(out)
    }

    /// Opens, decompresses and deserializes. Every failure is the same
    /// [`StoreError::Decode`]; the reason is logged at debug level.
    pub fn decode<V: DeserializeOwned>(&self, bytes: &[u8]) -> Result<V, StoreError> {
        self.decode_detailed(bytes).map(|(v, _)| v)
    }

    /// [`Codec::decode`], also saying which key sealed the value, so a store
    /// can re-seal values under a previous key.
    pub fn decode_detailed<V: DeserializeOwned>(
        &self,
        bytes: &[u8],
    ) -> Result<(V, Decoded), StoreError> {
        self.decode_owned(Cow::Borrowed(bytes))
    }

    /// Decodes a session record written by [`Codec::encode_record`] or, for
    /// values written before the compact layout, by [`Codec::encode`].
    /// Failures are one opaque [`StoreError::Decode`], as for
    /// [`Codec::decode`].
    pub fn decode_record<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
    ) -> Result<Record<T>, StoreError> {
        self.decode_record_owned(Cow::Borrowed(bytes))
            .map(|(r, _)| r)
    }

    /// [`Codec::decode_record`] on a buffer the caller owns (a sealed value
    /// is then decrypted in place, without a copy), also saying which key
    /// sealed it.
    pub(crate) fn decode_record_owned<T: DeserializeOwned>(
        &self,
        bytes: Cow<'_, [u8]>,
    ) -> Result<(Record<T>, Decoded), StoreError> {
        logged(self.try_decode(bytes, |flags, body| {
            if flags & FLAG_BYTES != 0 {
                Err("raw bytes: read them with decode_bytes")
            } else if flags & FLAG_RECORD != 0 {
                frame::read(body)
            } else {
                self.parse(body)
            }
        }))
    }

    /// [`Codec::decode_detailed`] on a buffer the caller owns (a sealed value
    /// is then decrypted in place, without a copy).
    pub(crate) fn decode_owned<V: DeserializeOwned>(
        &self,
        bytes: Cow<'_, [u8]>,
    ) -> Result<(V, Decoded), StoreError> {
        logged(self.try_decode(bytes, |flags, body| {
            if flags & FLAG_RECORD != 0 {
                return Err("a compact session record: read it with decode_record");
            }
            if flags & FLAG_BYTES != 0 {
                return Err("raw bytes: read them with decode_bytes");
            }
            self.parse(body)
        }))
    }

    /// Deserializes a whole value in the codec's format.
    fn parse<V: DeserializeOwned>(&self, body: &[u8]) -> Result<V, &'static str> {
        match self.format {
            Format::Json => serde_json::from_slice(body).map_err(|_| "does not deserialize"),
        }
    }

    /// Opens, checks and inflates; `parse` gets the flags and the body.
    fn try_decode<V>(
        &self,
        bytes: Cow<'_, [u8]>,
        parse: impl FnOnce(u8, &[u8]) -> Result<V, &'static str>,
    ) -> Result<(V, Decoded), &'static str> {
        if bytes.len() > self.max_encoded_len {
            return Err("input over the size limit");
        }
        let opened;
        let (flags, body, info) = match &self.sealer {
            Some(sealer) => {
                opened = sealer.open(bytes.into_owned())?;
                let info = Decoded {
                    key_id: Some(opened.key_id),
                    stale_key: !sealer.is_current(opened.key_id),
                };
                (opened.flags, &opened.buf[opened.range.clone()], info)
            }
            None => {
                if bytes.len() < PLAIN_HEADER_LEN {
                    return Err("shorter than a header");
                }
                if bytes[0] != VERSION {
                    return Err("unknown version");
                }
                if bytes[1] != 0 {
                    return Err("sealed value given to a codec that does not seal");
                }
                if bytes[2] & !KNOWN_FLAGS != 0 {
                    return Err("unknown flags");
                }
                let info = Decoded {
                    key_id: None,
                    stale_key: false,
                };
                (bytes[2], &bytes[PLAIN_HEADER_LEN..], info)
            }
        };
        let inflated;
        let body = if flags & FLAG_GZIP != 0 {
            inflated = compress::gunzip(body, self.max_decoded_len)?;
            &inflated[..]
        } else if body.len() > self.max_decoded_len {
            return Err("decoded size over the limit");
        } else {
            body
        };
        Ok((parse(flags, body)?, info))
    }
}

/// Builder for [`Codec`].
#[must_use = "call .build() to get a Codec"]
pub struct CodecBuilder<'a> {
    format: Format,
    compression: Compression,
    gzip_level: u32,
    seal: Option<(&'a KeyRing, KeyPurpose)>,
    algorithm: Algorithm,
    context: Vec<u8>,
    max_encoded_len: usize,
    max_decoded_len: usize,
}

impl fmt::Debug for CodecBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodecBuilder")
            .field("format", &self.format)
            .field("compression", &self.compression)
            .field("purpose", &self.seal.map(|s| s.1))
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl<'a> CodecBuilder<'a> {
    /// The serialization format (default JSON).
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Compression (default gzip above 256 bytes).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// The gzip level, 0 (store) to 9 (smallest); values over 9 count as 9.
    /// Default 1: about three times faster than zlib's default 6 on session
    /// values (`benches/seal.rs`), for slightly larger output.
    pub fn gzip_level(mut self, level: u32) -> Self {
        self.gzip_level = level.min(9);
        self
    }

    /// Seals every value with `ring`'s subkeys for `purpose` (current key
    /// seals, every key opens). The cipher instances are built in
    /// [`CodecBuilder::build`]; the ring itself is not kept.
    pub fn seal(mut self, ring: &'a KeyRing, purpose: KeyPurpose) -> Self {
        self.seal = Some((ring, purpose));
        self
    }

    /// The AEAD (default XChaCha20-Poly1305; see [`Algorithm`] for the
    /// nonce limits). Only used with [`CodecBuilder::seal`].
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Bytes bound into every sealed value's associated data (the cookie
    /// name, a key prefix): a value sealed under one context does not open
    /// under another. Only used with [`CodecBuilder::seal`].
    pub fn context(mut self, context: impl AsRef<[u8]>) -> Self {
        self.context = context.as_ref().to_vec();
        self
    }

    /// Longest encoded value accepted, checked before any decoding (default 1 MiB).
    pub fn max_encoded_len(mut self, n: usize) -> Self {
        self.max_encoded_len = n;
        self
    }

    /// Longest serialized value, after decompression (default 1 MiB).
    pub fn max_decoded_len(mut self, n: usize) -> Self {
        self.max_decoded_len = n;
        self
    }

    /// Builds the codec.
    pub fn build(self) -> Codec {
        Codec {
            format: self.format,
            compression: self.compression,
            gzip_level: self.gzip_level,
            sealer: self
                .seal
                .map(|(ring, purpose)| Sealer::new(ring, purpose, self.algorithm, &self.context)),
            max_encoded_len: self.max_encoded_len,
            max_decoded_len: self.max_decoded_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::builder()
            .current(1, "0123456789abcdef0123456789abcdef")
            .build()
            .unwrap()
    }

    #[test]
    fn large_values_are_compressed_and_flagged_small_ones_are_not() {
        let c = Codec::default();
        let big = "a".repeat(1000);
        let bytes = c.encode(&big).unwrap();
        assert_eq!(bytes[2], FLAG_GZIP);
        assert!(bytes.len() < 100);
        assert_eq!(c.decode::<String>(&bytes).unwrap(), big);
        let small = c.encode("a").unwrap();
        assert_eq!(small[2], 0);
        let off = Codec::builder().compression(Compression::None).build();
        assert_eq!(off.encode(&big).unwrap()[2], 0);
    }

    #[test]
    fn records_decode_from_both_layouts_and_only_through_decode_record() {
        use crate::expiry::ExpiryPolicy;
        use crate::id::SessionId;
        let r = ring();
        let mut record = Record::new(
            SessionId::generate(),
            "x".repeat(400), // compressed too
            std::time::SystemTime::now(),
            &ExpiryPolicy::default(),
        );
        record.owner = Some("ada".into());
        for codec in [
            Codec::default(),
            Codec::builder().seal(&r, KeyPurpose::CookieSealing).build(),
            Codec::builder()
                .seal(&r, KeyPurpose::StoreData)
                .algorithm(Algorithm::Aes256Gcm)
                .compression(Compression::None)
                .build(),
        ] {
            let compact = codec.encode_record(&record).unwrap();
            let json = codec.encode(&record).unwrap();
            assert!(compact.len() < json.len());
            for bytes in [&compact, &json] {
                let back: Record<String> = codec.decode_record(bytes).unwrap();
                assert_eq!(
                    (back.id, &back.data, &back.owner),
                    (record.id, &record.data, &record.owner)
                );
            }
            // The compact layout is not JSON: the plain decoder says no.
            assert!(codec.decode::<Record<String>>(&compact).is_err());
        }
    }

    #[test]
    fn sealed_and_plain_codecs_refuse_each_others_values() {
        let r = ring();
        let sealed = Codec::builder().seal(&r, KeyPurpose::StoreData).build();
        let plain = Codec::default();
        assert!(plain.decode::<u32>(&sealed.encode(&7u32).unwrap()).is_err());
        assert!(sealed.decode::<u32>(&plain.encode(&7u32).unwrap()).is_err());
        assert_eq!(
            sealed
                .decode::<u32>(&sealed.encode(&7u32).unwrap())
                .unwrap(),
            7
        );
    }

    #[test]
    fn oversized_input_is_refused_before_decoding() {
        let c = Codec::builder().max_encoded_len(100).build();
        let mut v = c.encode("x").unwrap();
        v.resize(101, b' ');
        assert!(c.decode::<String>(&v).is_err());
        assert!(matches!(
            c.encode(&"y".repeat(200)),
            Err(StoreError::Encode(_))
        ));
    }

    #[test]
    fn a_sealed_gzip_bomb_is_refused_after_authentication() {
        let r = ring();
        let c = Codec::builder()
            .seal(&r, KeyPurpose::StoreData)
            .max_decoded_len(64 << 10)
            .build();
        // A legitimately sealed value that inflates past the limit.
        let big = Codec::builder()
            .seal(&r, KeyPurpose::StoreData)
            .max_decoded_len(usize::MAX)
            .gzip_level(9)
            .build()
            .encode(&"0".repeat(1 << 20))
            .unwrap();
        assert!(big.len() < 10_000);
        assert!(matches!(
            c.decode::<String>(&big),
            Err(StoreError::Decode(_))
        ));
    }

    #[test]
    fn errors_are_opaque() {
        let c = Codec::default();
        let e1 = c.decode::<u32>(b"").unwrap_err().to_string();
        let e2 = c
            .decode::<u32>(b"\x01\x00\x00\"not a number\"")
            .unwrap_err()
            .to_string();
        assert_eq!(e1, e2);
    }

    #[test]
    fn decode_detailed_reports_a_previous_key() {
        let old = ring();
        let new = KeyRing::builder()
            .current(2, "fedcba9876543210fedcba9876543210")
            .previous(1, "0123456789abcdef0123456789abcdef")
            .build()
            .unwrap();
        let v = Codec::builder()
            .seal(&old, KeyPurpose::StoreData)
            .build()
            .encode(&1u8)
            .unwrap();
        let c = Codec::builder().seal(&new, KeyPurpose::StoreData).build();
        let (_, info) = c.decode_detailed::<u8>(&v).unwrap();
        assert_eq!(
            info,
            Decoded {
                key_id: Some(1),
                stale_key: true
            }
        );
        let (_, info) = c.decode_detailed::<u8>(&c.encode(&1u8).unwrap()).unwrap();
        assert!(!info.stale_key);
    }

    /// The codecs the bytes tests run through: plain, sealed with each
    /// algorithm, with and without gzip.
    fn every_codec(r: &KeyRing) -> Vec<Codec> {
        vec![
            Codec::default(),
            Codec::builder().compression(Compression::None).build(),
            Codec::builder().seal(r, KeyPurpose::StoreData).build(),
            Codec::builder()
                .seal(r, KeyPurpose::CookieSealing)
                .algorithm(Algorithm::Aes256Gcm)
                .compression(Compression::None)
                .build(),
        ]
    }

    #[test]
    fn bytes_round_trip_and_never_pass_for_typed_values_or_records() {
        use crate::expiry::ExpiryPolicy;
        use crate::id::SessionId;
        let r = ring();
        let record = Record::new(
            SessionId::generate(),
            7u32,
            std::time::SystemTime::now(),
            &ExpiryPolicy::default(),
        );
        for codec in every_codec(&r) {
            for payload in [&b""[..], b"[1,2]", &[0xff; 3000]] {
                let v = codec.encode_bytes(payload).unwrap();
                assert_eq!(codec.decode_bytes(&v).unwrap(), payload);
                // `[1,2]` is valid JSON: the flag, not the content, decides.
                assert!(codec.decode::<Vec<u8>>(&v).is_err());
                assert!(codec.decode::<serde_json::Value>(&v).is_err());
                assert!(codec.decode_record::<u32>(&v).is_err());
            }
            assert!(codec
                .decode_bytes(&codec.encode(&vec![1u8, 2]).unwrap())
                .is_err());
            assert!(codec
                .decode_bytes(&codec.encode_record(&record).unwrap())
                .is_err());
        }
        // Large, compressible bytes are gzip-flagged.
        let v = Codec::default().encode_bytes(&[b'a'; 1000]).unwrap();
        assert_eq!(v[2], FLAG_BYTES | FLAG_GZIP);
        assert!(v.len() < 100);
    }

    #[test]
    fn a_value_claiming_to_be_both_bytes_and_a_record_is_refused() {
        let c = Codec::builder().compression(Compression::None).build();
        let mut v = c.encode_bytes(b"{}").unwrap();
        v[2] |= FLAG_RECORD;
        assert!(c.decode_bytes(&v).is_err());
        assert!(c.decode_record::<serde_json::Value>(&v).is_err());
        assert!(c.decode::<serde_json::Value>(&v).is_err());
        v[2] = 0b1000;
        assert!(c.decode_bytes(&v).is_err());
    }

    proptest::proptest! {
        #[test]
        fn bytes_round_trip_any_payload(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            for codec in every_codec(&ring()) {
                let v = codec.encode_bytes(&payload).unwrap();
                proptest::prop_assert_eq!(codec.decode_bytes(&v).unwrap(), payload.clone());
            }
        }

        #[test]
        fn decode_bytes_refuses_arbitrary_input_without_panicking(input in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            for codec in every_codec(&ring()) {
                // Plain codecs accept a well-formed plain header; sealed
                // ones must never open forged input.
                let r = codec.decode_bytes(&input);
                if codec.is_sealed() {
                    proptest::prop_assert!(r.is_err());
                }
            }
        }
    }
}
