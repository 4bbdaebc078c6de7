//! Background tasks a store runs on some Tokio runtime, and how it tells
//! that one is gone: the runtime shut down (dropping its tasks, polled or
//! not) while the store lived on, or the task ended.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;

/// Clears its flag when dropped.
struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Spawns `task` on the runtime of `handle` and sets `running`, which is
/// cleared when the task is gone: ended, or dropped with its runtime. The
/// guard that clears it is moved into the task, not made in it, so a task
/// dropped before its first poll (a runtime shutting down right then)
/// clears it too.
pub(crate) fn spawn_flagged(
    handle: &Handle,
    running: &Arc<AtomicBool>,
    task: impl Future<Output = ()> + Send + 'static,
) {
    running.store(true, Ordering::Release);
    let guard = ClearOnDrop(running.clone());
    drop(handle.spawn(async move {
        let _guard = guard;
        task.await;
    }));
}
