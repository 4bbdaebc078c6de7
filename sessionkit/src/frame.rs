//! The compact record layout: a [`Record`]'s metadata in fixed binary
//! fields, only the application's data (and any flash messages) as JSON.
//!
//! ```text
//! byte  0        layout: 1 = the session id follows, 2 = its handle
//! byte  1        present: bit 0 owner, bit 1 binding, bit 2 flash,
//!                bit 3 write ids; others 0
//! bytes 2..34    session id (raw 32 bytes), or its handle (the id's SHA-256)
//! then 5 × u64   created_at, last_access, idle_deadline, absolute_deadline
//!                (milliseconds since the epoch) and version, little-endian
//! then           owner, binding: u32 length (little-endian) + UTF-8, if present
//! then           write ids: u8 count (1 to 4) + that many u64, if present
//!                (the ids of the record's last writes, newest first; see
//!                `Save::write_id`; only server-side stores write them)
//! then           flash: u32 length + JSON array of messages, if present
//! then           the data as JSON, to the end
//! ```
//!
//! Used by the codec (sealed cookies, sealed Redis values: layout 1) and
//! for the Redis store's plain payloads (layout 2: a value read out of Redis
//! must not give away a working cookie; layout 1 values written before it
//! are still read).
//!
//! Why not JSON for the whole record: in a sealed cookie the record's
//! field names, the base64 id and four decimal timestamps were about 200 of
//! the bytes and most of the decode time (serde_json over a small record,
//! measured with callgrind). Here the metadata costs 74 bytes and a few
//! loads; the data stays JSON so every serde feature of the application's
//! type keeps working. Written by hand because it is a fixed layout of a
//! dozen fields: a general binary serde format would still carry the data in
//! its own non-self-describing form, which `skip_serializing_if` and
//! untagged enums break.
//!
//! Reading is bounds-checked at every step and fails with a reason that
//! quotes nothing of the input.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::StoreError;
use crate::expiry::{from_millis, to_millis};
pub(crate) use crate::id::Named;
use crate::id::{SessionHandle, SessionId, ID_BYTES};
use crate::record::{Record, WriteIds, WRITE_IDS};

/// The session id in the name field.
const LAYOUT_ID: u8 = 1;
/// The session's handle in the name field.
const LAYOUT_HANDLE: u8 = 2;

const HAS_OWNER: u8 = 0b001;
const HAS_BINDING: u8 = 0b010;
const HAS_FLASH: u8 = 0b100;
const HAS_WRITES: u8 = 0b1000;
const KNOWN: u8 = HAS_OWNER | HAS_BINDING | HAS_FLASH | HAS_WRITES;

/// Appends `record` in the compact layout to `buf`, with `version` in place
/// of `record.version` (a store writing the next version encodes it without
/// copying the record).
#[cfg_attr(not(feature = "crypto"), allow(dead_code))] // the codec's
pub(crate) fn write<T: Serialize>(
    record: &Record<T>,
    version: u64,
    buf: &mut Vec<u8>,
) -> Result<(), StoreError> {
    write_named(
        record,
        LAYOUT_ID,
        record.id.as_bytes(),
        version,
        [0; WRITE_IDS],
        buf,
    )
}

/// [`write`] with the session's `handle` in place of its id (layout 2),
/// and the record's write ids after a write named `write_id` (see
/// `WriteIds::after`; a cookie never carries them).
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // the Redis store's
pub(crate) fn write_handle<T: Serialize>(
    record: &Record<T>,
    handle: &SessionHandle,
    version: u64,
    write_id: u64,
    buf: &mut Vec<u8>,
) -> Result<(), StoreError> {
    write_named(
        record,
        LAYOUT_HANDLE,
        handle.as_bytes(),
        version,
        record.writes.array_after(write_id),
        buf,
    )
}

fn write_named<T: Serialize>(
    record: &Record<T>,
    layout: u8,
    name: &[u8; ID_BYTES],
    version: u64,
    writes: [u64; WRITE_IDS],
    buf: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let mut present = 0;
    let written = writes.iter().filter(|&&id| id != 0).count();
    if written > 0 {
        present |= HAS_WRITES;
    }
    if record.owner.is_some() {
        present |= HAS_OWNER;
    }
    if record.binding.is_some() {
        present |= HAS_BINDING;
    }
    if !record.flash.is_empty() {
        present |= HAS_FLASH;
    }
    buf.reserve(2 + ID_BYTES + 5 * 8 + 64);
    buf.push(layout);
    buf.push(present);
    buf.extend_from_slice(name);
    for t in [
        record.created_at,
        record.last_access,
        record.idle_deadline,
        record.absolute_deadline,
    ] {
        buf.extend_from_slice(&to_millis(t).to_le_bytes());
    }
    buf.extend_from_slice(&version.to_le_bytes());
    for text in [&record.owner, &record.binding].into_iter().flatten() {
        put_len(buf, text.len())?;
        buf.extend_from_slice(text.as_bytes());
    }
    if written > 0 {
        buf.push(written as u8);
        for id in writes.iter().filter(|&&id| id != 0) {
            buf.extend_from_slice(&id.to_le_bytes());
        }
    }
    if !record.flash.is_empty() {
        let at = buf.len();
        buf.extend_from_slice(&[0; 4]);
        serde_json::to_writer(&mut *buf, &record.flash).map_err(json_error)?;
        let len = u32::try_from(buf.len() - at - 4).map_err(|_| too_long())?;
        buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    serde_json::to_writer(&mut *buf, &record.data).map_err(json_error)
}

/// Reads what [`write`] wrote; refuses a record that carries only a handle.
/// The reason on failure quotes no input.
#[cfg_attr(not(feature = "crypto"), allow(dead_code))] // the codec's
pub(crate) fn read<T: DeserializeOwned>(bytes: &[u8]) -> Result<Record<T>, &'static str> {
    if bytes.first() == Some(&LAYOUT_HANDLE) {
        // Refused before its data is parsed.
        return Err("record names its session by handle only");
    }
    let record = read_named(bytes)?;
    match record.id {
        Named::Id(id) => Ok(record.with_id(id)),
        Named::Handle(_) => Err("record names its session by handle only"),
    }
}

/// Reads what [`write`] or [`write_handle`] wrote. The reason on failure
/// quotes no input.
pub(crate) fn read_named<T: DeserializeOwned>(
    bytes: &[u8],
) -> Result<Record<T, Named>, &'static str> {
    let mut r = Reader(bytes);
    let layout = r.byte()?;
    if layout != LAYOUT_ID && layout != LAYOUT_HANDLE {
        return Err("unknown record layout");
    }
    let present = r.byte()?;
    // Write ids are a server-side store's: never in layout 1 (cookies).
    let known = match layout {
        LAYOUT_ID => KNOWN & !HAS_WRITES,
        _ => KNOWN,
    };
    if present & !known != 0 {
        return Err("unknown record fields");
    }
    let name = r.array()?;
    let id = match layout {
        LAYOUT_ID => Named::Id(SessionId::from_bytes(name)),
        _ => Named::Handle(SessionHandle::from_bytes(name)),
    };
    let created_at = from_millis(r.u64()?);
    let last_access = from_millis(r.u64()?);
    let idle_deadline = from_millis(r.u64()?);
    let absolute_deadline = from_millis(r.u64()?);
    let version = r.u64()?;
    let owner = (present & HAS_OWNER != 0).then(|| r.text()).transpose()?;
    let binding = (present & HAS_BINDING != 0).then(|| r.text()).transpose()?;
    let mut writes = WriteIds::default();
    if present & HAS_WRITES != 0 {
        let count = usize::from(r.byte()?);
        if count == 0 || count > WRITE_IDS {
            return Err("bad count of write ids");
        }
        let mut ids = [0; WRITE_IDS];
        for slot in &mut ids[..count] {
            *slot = r.u64()?;
            if *slot == 0 {
                return Err("bad write id");
            }
        }
        writes = WriteIds::from_array(ids);
    }
    let flash = match present & HAS_FLASH != 0 {
        true => {
            serde_json::from_slice(r.sized()?).map_err(|_| "flash messages do not deserialize")?
        }
        false => Vec::new(),
    };
    let data = serde_json::from_slice(r.0).map_err(|_| "data does not deserialize")?;
    Ok(Record {
        id,
        data,
        flash,
        created_at,
        last_access,
        idle_deadline,
        absolute_deadline,
        owner,
        binding,
        version,
        writes,
    })
}

fn put_len(buf: &mut Vec<u8>, len: usize) -> Result<(), StoreError> {
    let len = u32::try_from(len).map_err(|_| too_long())?;
    buf.extend_from_slice(&len.to_le_bytes());
    Ok(())
}

fn too_long() -> StoreError {
    StoreError::Encode("a session field is over 4 GiB".into())
}

fn json_error(e: serde_json::Error) -> StoreError {
    // serde_json's messages can quote data; keep only the category.
    StoreError::Encode(format!("JSON encoding failed ({:?})", e.classify()))
}

/// The unread rest of the input.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("record truncated");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }

    fn byte(&mut self) -> Result<u8, &'static str> {
        Ok(self.array::<1>()?[0])
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A u32 length, then that many bytes.
    fn sized(&mut self) -> Result<&'a [u8], &'static str> {
        let len = u32::from_le_bytes(self.array()?);
        self.take(usize::try_from(len).map_err(|_| "record truncated")?)
    }

    fn text(&mut self) -> Result<String, &'static str> {
        let bytes = self.sized()?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| "text field is not UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expiry::ExpiryPolicy;
    use crate::flash::FlashMessage;
    use std::time::{Duration, SystemTime};

    #[derive(serde::Serialize, serde::Deserialize, Default, Clone, PartialEq, Debug)]
    struct Data {
        counter: u64,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    }

    fn full_record() -> Record<Data> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        let mut r = Record::new(
            SessionId::generate(),
            Data {
                counter: 7,
                name: "ada \"quoted\" ✓".into(),
                note: None,
            },
            now,
            &ExpiryPolicy::default(),
        );
        r.owner = Some("user-42".into());
        r.binding = Some("fingerprint".into());
        r.flash = vec![FlashMessage {
            key: "notice".into(),
            value: "saved".into(),
        }];
        r.version = 9;
        r
    }

    fn same<T: PartialEq + std::fmt::Debug>(a: &Record<T>, b: &Record<T>) {
        assert_eq!(a.id, b.id);
        assert_eq!(a.data, b.data);
        assert_eq!(a.flash, b.flash);
        assert_eq!(
            (
                a.created_at,
                a.last_access,
                a.idle_deadline,
                a.absolute_deadline
            ),
            (
                b.created_at,
                b.last_access,
                b.idle_deadline,
                b.absolute_deadline
            )
        );
        assert_eq!(
            (&a.owner, &a.binding, a.version),
            (&b.owner, &b.binding, b.version)
        );
    }

    #[test]
    fn a_record_written_by_handle_carries_no_id_and_reads_back_only_by_handle() {
        let r = full_record();
        let handle = r.id.handle();
        let mut buf = Vec::new();
        write_handle(&r, &handle, r.version, 0, &mut buf).unwrap();
        assert!(
            !buf.windows(ID_BYTES).any(|w| w == r.id.as_bytes()),
            "the raw id is nowhere in the bytes"
        );
        assert!(!String::from_utf8_lossy(&buf).contains(&r.id.encode()));
        assert_eq!(
            read::<Data>(&buf).unwrap_err(),
            "record names its session by handle only"
        );
        let back = read_named::<Data>(&buf).unwrap();
        assert_eq!(back.id, Named::Handle(handle));
        same(&back.with_id(r.id), &r);
        // A layout-1 record reads back named by its id, whose handle it gives.
        buf.clear();
        write(&r, r.version, &mut buf).unwrap();
        let named = read_named::<Data>(&buf).unwrap().id;
        assert_eq!(named, Named::Id(r.id));
        assert_eq!(named.handle(), handle);
    }

    #[test]
    fn write_ids_round_trip_in_layout_2_newest_first_and_never_in_layout_1() {
        let mut r = full_record();
        r.writes = WriteIds::from_array([7, 0, 0, 0]);
        let handle = r.id.handle();
        let mut buf = Vec::new();
        write_handle(&r, &handle, r.version, 9, &mut buf).unwrap();
        assert_eq!(buf[1] & HAS_WRITES, HAS_WRITES);
        let back = read_named::<Data>(&buf).unwrap();
        assert_eq!(back.writes, WriteIds::from_array([9, 7, 0, 0]));
        same(&back.with_id(r.id), &r);
        // Four kept, the oldest dropped.
        r.writes = WriteIds::from_array([4, 3, 2, 1]);
        buf.clear();
        write_handle(&r, &handle, r.version, 5, &mut buf).unwrap();
        assert_eq!(
            read_named::<Data>(&buf).unwrap().writes,
            WriteIds::from_array([5, 4, 3, 2])
        );
        // A write without an id keeps them as they were.
        buf.clear();
        write_handle(&r, &handle, r.version, 0, &mut buf).unwrap();
        assert_eq!(read_named::<Data>(&buf).unwrap().writes, r.writes);
        // A cookie (layout 1) never carries them.
        buf.clear();
        write(&r, r.version, &mut buf).unwrap();
        assert_eq!(buf[1] & HAS_WRITES, 0);
        assert_eq!(read::<Data>(&buf).unwrap().writes, WriteIds::default());
    }

    #[test]
    fn hostile_write_ids_are_errors() {
        let mut r = full_record();
        r.writes = WriteIds::from_array([7, 0, 0, 0]);
        let mut buf = Vec::new();
        write_handle(&r, &r.id.handle(), r.version, 0, &mut buf).unwrap();
        // The count follows owner and binding: find it by its value.
        let at = buf
            .windows(9)
            .position(|w| w == [1, 7, 0, 0, 0, 0, 0, 0, 0])
            .expect("one write id");
        for (count, reason) in [
            (0, "bad count of write ids"),
            (5, "bad count of write ids"),
            (255, "bad count of write ids"),
        ] {
            let mut b = buf.clone();
            b[at] = count;
            assert_eq!(read_named::<Data>(&b).err(), Some(reason));
        }
        let mut b = buf.clone();
        b[at + 1] = 0;
        assert_eq!(read_named::<Data>(&b).err(), Some("bad write id"));
        for len in 0..buf.len() {
            assert!(
                read_named::<Data>(&buf[..len]).is_err(),
                "truncated at {len}"
            );
        }
    }

    #[test]
    fn every_field_round_trips() {
        let r = full_record();
        let mut buf = Vec::new();
        write(&r, r.version, &mut buf).unwrap();
        same(&read::<Data>(&buf).unwrap(), &r);
        // And with every optional part absent.
        let bare = Record::new(
            SessionId::generate(),
            Data::default(),
            SystemTime::UNIX_EPOCH,
            &ExpiryPolicy::default(),
        );
        buf.clear();
        write(&bare, bare.version, &mut buf).unwrap();
        assert_eq!(buf[1], 0, "nothing optional is present");
        same(&read::<Data>(&buf).unwrap(), &bare);
    }

    #[test]
    fn the_version_written_is_the_one_given() {
        let r = full_record();
        let mut buf = Vec::new();
        write(&r, r.version + 1, &mut buf).unwrap();
        let back = read::<Data>(&buf).unwrap();
        assert_eq!(back.version, r.version + 1);
        assert_eq!((back.id, back.data), (r.id, r.data));
    }

    #[test]
    fn the_layout_is_much_smaller_than_json() {
        let r = full_record();
        let mut buf = Vec::new();
        write(&r, r.version, &mut buf).unwrap();
        let json = serde_json::to_vec(&r).unwrap();
        assert!(
            buf.len() * 3 < json.len() * 2,
            "{} vs {}",
            buf.len(),
            json.len()
        );
    }

    #[test]
    fn every_truncation_and_every_unknown_bit_is_an_error() {
        let mut buf = Vec::new();
        write(&full_record(), full_record().version, &mut buf).unwrap();
        for len in 0..buf.len() {
            assert!(read::<Data>(&buf[..len]).is_err(), "truncated at {len}");
        }
        for bit in 3..8 {
            let mut b = buf.clone();
            b[1] |= 1 << bit;
            assert_eq!(read::<Data>(&b).err(), Some("unknown record fields"));
        }
        for layout in [0, 3, 255] {
            let mut b = buf.clone();
            b[0] = layout;
            assert_eq!(read::<Data>(&b).err(), Some("unknown record layout"));
            assert_eq!(read_named::<Data>(&b).err(), Some("unknown record layout"));
        }
        // Layout 2 (by handle) is known, but not where an id is required.
        let mut b = buf.clone();
        b[0] = 2;
        assert_eq!(
            read::<Data>(&b).err(),
            Some("record names its session by handle only")
        );
        // A length pointing past the end (the owner's, at byte 74).
        let mut b = buf.clone();
        b[74..78].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(read::<Data>(&b).err(), Some("record truncated"));
        // An owner that is not UTF-8.
        let mut b = buf;
        b[78] = 0xff;
        assert_eq!(read::<Data>(&b).err(), Some("text field is not UTF-8"));
    }

    proptest::proptest! {
        /// Arbitrary bytes are an error or a record, never a panic.
        #[test]
        fn arbitrary_bytes_are_an_error_or_a_record(bytes in proptest::collection::vec(0u8.., 0..300)) {
            let _ = read::<Data>(&bytes);
            let _ = read::<serde_json::Value>(&bytes);
        }

        #[test]
        fn arbitrary_records_round_trip(
            id in proptest::array::uniform32(0u8..),
            times in proptest::array::uniform4(0u64..=u64::MAX / 2_000_000),
            version in 0u64..,
            owner in proptest::option::of(".{0,20}"),
            binding in proptest::option::of("[a-f0-9]{0,64}"),
            flash in proptest::collection::vec((".{0,10}", ".{0,30}"), 0..3),
            name in ".{0,40}",
        ) {
            let t = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
            let r = Record {
                id: SessionId::from_bytes(id),
                data: Data { counter: version, name, note: owner.clone() },
                flash: flash.into_iter().map(|(key, value)| FlashMessage { key, value }).collect(),
                created_at: t(times[0]),
                last_access: t(times[1]),
                idle_deadline: t(times[2]),
                absolute_deadline: t(times[3]),
                owner,
                binding,
                version,
                writes: WriteIds::default(),
            };
            let mut buf = Vec::new();
            write(&r, r.version, &mut buf).unwrap();
            same(&read::<Data>(&buf).unwrap(), &r);
        }
    }
}
