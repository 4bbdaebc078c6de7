//! Background tasks a store runs on some Tokio runtime, and how it tells
//! that one is gone: the runtime shut down (dropping its tasks, polled or
//! not) while the store lived on, or the task ended.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;

/// Clears its flag when dropped (the task ended, or was dropped with its
/// runtime), unless told to keep it set.
struct ClearOnDrop {
    flag: Arc<AtomicBool>,
    clear: bool,
}

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        if self.clear {
            self.flag.store(false, Ordering::Release);
        }
    }
}

/// Spawns `task` on the runtime of `handle` and sets `running`, which is
/// cleared when the task is gone: ended, or dropped with its runtime. The
/// guard that clears it is moved into the task, not made in it, so a task
/// dropped before its first poll (a runtime shutting down right then)
/// clears it too. A task that panics leaves it set, for good: one that
/// cannot run here (a runtime built without `enable_time`, for a sweeper's
/// timer) would panic again on every restart, once per store call.
pub(crate) fn spawn_flagged(
    handle: &Handle,
    running: &Arc<AtomicBool>,
    task: impl Future<Output = ()> + Send + 'static,
) {
    use futures_util::FutureExt;
    running.store(true, Ordering::Release);
    let mut guard = ClearOnDrop {
        flag: running.clone(),
        clear: true,
    };
    drop(handle.spawn(async move {
        if std::panic::AssertUnwindSafe(task)
            .catch_unwind()
            .await
            .is_err()
        {
            guard.clear = false;
            tracing::error!(
                "a sessionkit background task panicked and will not be restarted \
                 (is the Tokio runtime built with `enable_time()`?)"
            );
        }
        drop(guard);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls the runtime until `flag` reads `want` (or gives up).
    fn settle(rt: &tokio::runtime::Runtime, flag: &AtomicBool, want: bool) -> bool {
        rt.block_on(async {
            for _ in 0..100 {
                if flag.load(Ordering::Acquire) == want {
                    return true;
                }
                tokio::task::yield_now().await;
            }
            false
        })
    }

    #[test]
    fn a_task_that_ends_clears_its_flag_and_one_that_panics_does_not() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ended = Arc::new(AtomicBool::new(false));
        spawn_flagged(rt.handle(), &ended, async {});
        assert!(settle(&rt, &ended, false), "an ended task clears its flag");
        let panicked = Arc::new(AtomicBool::new(false));
        // As a sweeper on a runtime without timers does.
        spawn_flagged(rt.handle(), &panicked, async {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        });
        let done = Arc::new(AtomicBool::new(false));
        let seen = done.clone();
        spawn_flagged(rt.handle(), &Arc::new(AtomicBool::new(false)), async move {
            seen.store(true, Ordering::Release);
        });
        assert!(settle(&rt, &done, true), "the runtime ran on");
        assert!(
            panicked.load(Ordering::Acquire),
            "never restarted after a panic"
        );
    }
}
