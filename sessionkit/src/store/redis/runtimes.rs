//! Notices a store used from more than one Tokio runtime.
//!
//! A [`RedisStore`](super::RedisStore) has one connection, whose task runs
//! on one runtime. Used from a second runtime (actix-web runs one per
//! worker), every command of that runtime crosses threads twice on its way
//! to the connection and back: 40–50 % fewer `/read`s per second on
//! `sessionkit-bench`. The fix is one store per runtime (`build_lazy` in
//! actix-web's app factory); this module only notices the shared case, logs
//! it once and lets [`RedisStore::shared_across_runtimes`](super::RedisStore::shared_across_runtimes)
//! report it.
//!
//! Only the store's first [`CHECKS`] operations are looked at: the check
//! reads the current runtime's handle (a shared reference count), which is
//! not free on a hot path, and a shared store shows itself as soon as a
//! second worker takes a request.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::OnceLock;

/// How many operations of a store (all its clones together) are checked.
pub(super) const CHECKS: u32 = 256;

/// Which runtime used the store first, and whether another one has since.
#[derive(Debug)]
pub(super) struct RuntimeWatch {
    first: OnceLock<tokio::runtime::Id>,
    checks_left: AtomicU32,
    shared: AtomicBool,
}

impl RuntimeWatch {
    pub(super) fn new() -> Self {
        RuntimeWatch {
            first: OnceLock::new(),
            checks_left: AtomicU32::new(CHECKS),
            shared: AtomicBool::new(false),
        }
    }

    /// Called at the start of each store operation.
    pub(super) fn note(&self) {
        let left = self.checks_left.load(Ordering::Relaxed);
        if left == 0 {
            return;
        }
        // Not a read-modify-write: two threads may both store `left - 1`,
        // which only means a check more, never an underflow.
        self.checks_left.store(left - 1, Ordering::Relaxed);
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let id = handle.id();
        if *self.first.get_or_init(|| id) != id && !self.shared.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "a RedisStore is used from more than one Tokio runtime: its connection runs on \
                 one of them, so the others' commands cross threads (slower); on actix-web, \
                 build the store per worker in the app factory with RedisStoreBuilder::build_lazy"
            );
        }
    }

    pub(super) fn shared(&self) -> bool {
        self.shared.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    }

    #[test]
    fn one_runtime_is_not_flagged_a_second_is() {
        let watch = RuntimeWatch::new();
        let a = runtime();
        for _ in 0..10 {
            a.block_on(async { watch.note() });
        }
        assert!(!watch.shared(), "one runtime, many calls");
        // Outside any runtime: nothing to compare.
        watch.note();
        assert!(!watch.shared());
        runtime().block_on(async { watch.note() });
        assert!(watch.shared(), "a second runtime");
    }

    #[test]
    fn only_the_first_checks_are_looked_at() {
        let watch = RuntimeWatch::new();
        let a = runtime();
        for _ in 0..CHECKS {
            a.block_on(async { watch.note() });
        }
        runtime().block_on(async { watch.note() });
        assert!(!watch.shared(), "past the checked operations");
    }
}
