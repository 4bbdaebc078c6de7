//! Gzip (flate2, zlib-rs backend) with a bounded output size on the way back.
//!
//! A deflate compressor holds a few hundred kilobytes of tables; building
//! one per value cost more than the sealing itself. Each thread keeps one
//! and resets it between values (no allocation per value).
//!
//! Level 1 (fast): a sealed cookie of 1 KB of data took 56 µs to seal and
//! open at the default level 6, 18 µs at level 1 (`benches/seal.rs`,
//! `cookie_store_record`), for slightly larger output. Session values are
//! small and written often; the size limit is the cookie's, not a disk's.

use std::cell::RefCell;
use std::io::Read;

use flate2::read::GzDecoder;
use flate2::{Compress, FlushCompress, Status};

/// The level codecs use unless told otherwise (see the module docs).
pub(crate) const DEFAULT_LEVEL: u32 = 1;

thread_local! {
    /// One compressor per level in use on this thread (in practice one).
    static GZIP: RefCell<Vec<(u32, Compress)>> = const { RefCell::new(Vec::new()) };
}

/// Gzips `data` at `level` (0–9); `None` when the result is not smaller
/// (then it is stored as is), and on a thread whose locals are being torn
/// down (a session encoded from another thread-local's destructor: stored
/// uncompressed rather than a panic, which would abort there).
pub(crate) fn gzip(data: &[u8], level: u32) -> Option<Vec<u8>> {
    GZIP.try_with(|cell| {
        let mut all = cell.try_borrow_mut().ok()?;
        let at = match all.iter().position(|(l, _)| *l == level) {
            Some(at) => at,
            None => {
                let z = Compress::new_gzip(flate2::Compression::new(level.min(9)), 15);
                all.push((level, z));
                all.len() - 1
            }
        };
        let z = &mut all[at].1;
        z.reset();
        // Worth it only if smaller: stop as soon as the output reaches the input size.
        let mut out = Vec::with_capacity(data.len());
        loop {
            let read = z.total_in() as usize;
            let status = z
                .compress_vec(&data[read..], &mut out, FlushCompress::Finish)
                .ok()?;
            match status {
                Status::StreamEnd => break,
                _ if out.len() >= data.len() => return None,
                _ => out.reserve(256),
            }
        }
        (out.len() < data.len()).then_some(out)
    })
    .ok()
    .flatten()
}

/// Gunzips `data`, refusing to produce more than `max` bytes (a 4 KB cookie
/// can otherwise inflate to megabytes). A sealing codec calls it only after
/// authentication; an unsealed one calls it on unauthenticated bytes (a
/// stored value as read), so there the bound alone stops a gzip bomb.
pub(crate) fn gunzip(data: &[u8], max: usize) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(max));
    // Saturating: `max_decoded_len(usize::MAX)` ("no bound") must not overflow.
    let mut dec = GzDecoder::new(data).take((max as u64).saturating_add(1));
    dec.read_to_end(&mut out)
        .map_err(|_| "corrupt gzip stream")?;
    if out.len() > max {
        return Err("decompressed size over the limit");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_skips_incompressible_data() {
        let text = "abc".repeat(1000);
        let z = gzip(text.as_bytes(), DEFAULT_LEVEL).unwrap();
        assert!(z.len() < 100);
        assert_eq!(gunzip(&z, 3000).unwrap(), text.as_bytes());
        assert!(gzip(b"xy", DEFAULT_LEVEL).is_none());
    }

    #[test]
    fn the_reused_compressor_makes_valid_gzip_every_time() {
        for i in 0..5 {
            let text = format!("{i}").repeat(500 + i);
            let z = gzip(text.as_bytes(), DEFAULT_LEVEL).unwrap();
            assert_eq!(&z[..2], &[0x1f, 0x8b], "gzip magic");
            assert_eq!(gunzip(&z, 10_000).unwrap(), text.as_bytes());
        }
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![0u8; 10 << 20], 9).unwrap();
        assert!(bomb.len() < 20_000);
        assert_eq!(
            gunzip(&bomb, 64 << 10),
            Err("decompressed size over the limit")
        );
        assert!(gunzip(b"not gzip at all", 1000).is_err());
    }

    #[test]
    fn the_largest_limit_does_not_overflow() {
        let small = gzip(&[7u8; 1000], DEFAULT_LEVEL).unwrap();
        assert_eq!(gunzip(&small, usize::MAX).unwrap(), vec![7u8; 1000]);
    }
}
