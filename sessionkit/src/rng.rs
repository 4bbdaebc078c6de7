//! Random bytes for session ids and AEAD nonces: rand's thread-local
//! generator, made safe across `fork`.
//!
//! **Why not the OS generator on every call** (what earlier releases did):
//! one `getrandom` syscall costs 0.37–0.42 µs on the benchmark machine, a
//! quarter of sealing a small cookie and paid again by every new session
//! (`benches/seal.rs`, group `random`). The peers (tower-sessions,
//! actix-session, the `cookie` crate's private jar) all draw from rand's
//! thread-local generator instead.
//!
//! **Why not `rand::rng()`**: it is ChaCha12 seeded from the OS and
//! reseeded every 64 KiB, but a forked child inherits its state and would
//! repeat the parent's output: duplicate session ids, and repeated nonces
//! under one key, which breaks XChaCha20-Poly1305 and AES-GCM outright. rand
//! 0.9 leaves reseeding after `fork` to the caller. So this module keeps its
//! own thread-local ChaCha12 (rand's `StdRng`), and on Unix a
//! `pthread_atfork` child handler counts forks; every draw compares the
//! count with the one its generator was seeded at and, when they differ,
//! seeds a new one from the OS before drawing. The handler is registered
//! before the first generator exists, so every fork that could copy one is
//! counted. (A generator shared with the application, like `rand::rng()`,
//! could have been created, and copied by a fork, before that.) The check
//! is one relaxed atomic load. Like `ThreadRng`, a generator is replaced
//! after 64 KiB of output. `tests/fork.rs` forks a real process to prove the
//! child's bytes differ from the parent's, and that rand's generator alone
//! would repeat them.
//!
//! Long-term secrets ([`crate::keys::KeyRing::generate_secret`]) still come
//! straight from the OS.

use std::cell::RefCell;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// Output after which a thread's generator is replaced by a freshly seeded
/// one (what rand's `ThreadRng` does), so a copy of its state taken from
/// memory reveals at most this much.
const RESEED_AFTER: usize = 64 * 1024;

/// One thread's generator and what it was seeded at.
struct Local {
    /// The fork count when it was seeded.
    forks: u64,
    /// Bytes drawn since.
    drawn: usize,
    rng: StdRng,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

/// Fills `buf` with cryptographically secure random bytes.
///
/// # Panics
/// Only if the operating system cannot provide randomness at all (no secure
/// session can be issued then, and continuing would be worse).
pub(crate) fn fill(buf: &mut [u8]) {
    let forks = fork::count();
    let drawn = LOCAL.try_with(|local| {
        let mut local = local.borrow_mut();
        let stale = local
            .as_ref()
            .is_none_or(|l| l.forks != forks || l.drawn >= RESEED_AFTER);
        if stale {
            // Never draw from a state that may be shared with a parent.
            *local = StdRng::try_from_os_rng().ok().map(|rng| Local {
                forks,
                drawn: 0,
                rng,
            });
        }
        let Some(l) = local.as_mut() else {
            return false;
        };
        l.rng.fill_bytes(buf);
        l.drawn += buf.len();
        true
    });
    if drawn != Ok(true) {
        // The OS refused to seed, or this thread is being torn down: ask the
        // OS directly.
        getrandom::fill(buf).expect("the OS random number generator is unavailable");
    }
}

#[cfg(unix)]
#[allow(unsafe_code)]
mod fork {
    //! Counts `fork`s with a `pthread_atfork` child handler, registered
    //! before the first draw, so any fork after that draw is seen.

    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Once;

    static FORKS: AtomicU64 = AtomicU64::new(0);
    static REGISTER: Once = Once::new();

    /// Runs in the child, inside `fork`, before `fork` returns there: only
    /// async-signal-safe work is allowed, and an atomic add is.
    extern "C" fn in_child() {
        FORKS.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times this process's ancestry forked since the handler was
    /// registered (registers it on the first call).
    pub(super) fn count() -> u64 {
        REGISTER.call_once(|| {
            // SAFETY: `pthread_atfork` only stores the function pointers;
            // `in_child` is a plain `extern "C" fn` that lives for the whole
            // program and does one atomic add, which is async-signal-safe.
            let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
            // ENOMEM is the only documented failure. Without the handler a
            // forked child could repeat ids and nonces: refuse to go on.
            assert_eq!(
                rc, 0,
                "pthread_atfork failed ({rc}): cannot make random draws fork-safe"
            );
        });
        // Relaxed is enough: the child is single-threaded when the handler
        // runs, and threads it starts later see the count through spawn's
        // happens-before edge.
        FORKS.load(Ordering::Relaxed)
    }
}

#[cfg(not(unix))]
mod fork {
    //! No `fork` outside Unix: nothing to count.
    pub(super) fn count() -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ_and_fill_every_byte_position() {
        let mut seen_nonzero = [false; 64];
        let mut previous = [0u8; 64];
        for _ in 0..64 {
            let mut b = [0u8; 64];
            fill(&mut b);
            assert_ne!(b, previous);
            for (i, byte) in b.iter().enumerate() {
                seen_nonzero[i] |= *byte != 0;
            }
            previous = b;
        }
        assert!(seen_nonzero.iter().all(|&x| x));
    }

    #[test]
    fn a_changed_fork_count_or_enough_output_replaces_the_generator() {
        fill(&mut [0u8; 8]);
        let seeded_at = || LOCAL.with_borrow(|l| l.as_ref().map(|l| (l.forks, l.drawn)));
        // Pretend this thread's generator was seeded before a fork.
        LOCAL.with_borrow_mut(|l| l.as_mut().unwrap().forks += 1);
        fill(&mut [0u8; 8]);
        assert_eq!(seeded_at(), Some((fork::count(), 8)));
        // And after 64 KiB of output.
        LOCAL.with_borrow_mut(|l| l.as_mut().unwrap().drawn = RESEED_AFTER);
        fill(&mut [0u8; 16]);
        assert_eq!(seeded_at(), Some((fork::count(), 16)));
    }
}
