//! [`FaultyStore`] (feature `testing`): a store wrapper that fails on
//! command, to test what an application does while its store is down.
//!
//! ```
//! use sessionkit::resilience::fault::{Fault, FaultyStore};
//! use sessionkit::{store::memory::MemoryStore, Store, StoreError};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store = FaultyStore::new(MemoryStore::<u32>::new());
//! let switch = store.switch();
//! switch.set(Fault::Unavailable);
//! assert!(matches!(store.load("x").await, Err(StoreError::Unavailable(_))));
//! switch.set(Fault::None);
//! assert!(store.load("x").await.unwrap().is_none());
//! # }
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, StreamExt};
use parking_lot::Mutex;

use crate::error::StoreError;
use crate::id::{SessionHandle, SessionId};
use crate::record::{Record, SessionData};
use crate::store::{Predicate, QueryStore, RemovalListener, Removed, Save, SaveOutcome, Store};

/// What the next calls do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Work normally.
    None,
    /// Fail with [`StoreError::Unavailable`] without touching the store.
    Unavailable,
    /// Never answer (a hung server).
    Hang,
    /// Do the operation, then report [`StoreError::Timeout`] (a reply lost
    /// after the command was applied).
    LoseReply,
    /// Fail with [`StoreError::Backend`] (a server refusing commands).
    Backend,
    /// Fail with [`StoreError::Decode`] (a stored value this version of the
    /// application cannot read, e.g. after a change of the session type).
    Undecodable,
    /// Fail with [`StoreError::Conflict`] (a save that lost to other writes
    /// of the same session).
    Conflict,
}

#[derive(Debug)]
struct State {
    fault: Fault,
    /// Calls left before the fault turns back into `Fault::None` (`None`: forever).
    left: Option<usize>,
    /// Faults for the next calls, one each, before `fault` applies.
    first: std::collections::VecDeque<Fault>,
}

/// Controls a [`FaultyStore`]; clones control the same store.
#[derive(Debug, Clone)]
pub struct FaultSwitch {
    state: Arc<Mutex<State>>,
    calls: Arc<AtomicUsize>,
}

impl FaultSwitch {
    /// Applies `fault` to every call from now on.
    pub fn set(&self, fault: Fault) {
        *self.state.lock() = State {
            fault,
            left: None,
            first: Default::default(),
        };
    }

    /// Applies `fault` to the next `calls` calls, then works normally.
    pub fn set_for(&self, fault: Fault, calls: usize) {
        *self.state.lock() = State {
            fault,
            left: Some(calls),
            first: Default::default(),
        };
    }

    /// Applies `first` to the next calls, one fault each in order, then
    /// `then` to every call after them (e.g. a reply lost, a retry that
    /// goes through, then a server that hangs).
    ///
    /// ```
    /// use sessionkit::resilience::fault::{Fault, FaultyStore};
    /// use sessionkit::{store::memory::MemoryStore, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = FaultyStore::new(MemoryStore::<u32>::new());
    /// store.switch().set_after(&[Fault::Unavailable, Fault::None], Fault::Backend);
    /// assert!(store.load("x").await.is_err());
    /// assert!(store.load("x").await.is_ok());
    /// assert!(store.load("x").await.is_err());
    /// assert!(store.load("x").await.is_err());
    /// # }
    /// ```
    pub fn set_after(&self, first: &[Fault], then: Fault) {
        *self.state.lock() = State {
            fault: then,
            left: None,
            first: first.iter().copied().collect(),
        };
    }

    /// How many calls reached the wrapper (faulty or not).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn next(&self) -> Fault {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut s = self.state.lock();
        if let Some(fault) = s.first.pop_front() {
            return fault;
        }
        match s.left {
            None => s.fault,
            Some(0) => Fault::None,
            Some(n) => {
                s.left = Some(n - 1);
                s.fault
            }
        }
    }
}

/// A store that fails on command (see [`FaultSwitch`]).
pub struct FaultyStore<S> {
    inner: S,
    switch: FaultSwitch,
}

impl<S> FaultyStore<S> {
    /// Wraps `inner`, working normally until told otherwise.
    pub fn new(inner: S) -> Self {
        FaultyStore {
            inner,
            switch: FaultSwitch {
                state: Arc::new(Mutex::new(State {
                    fault: Fault::None,
                    left: None,
                    first: Default::default(),
                })),
                calls: Arc::new(AtomicUsize::new(0)),
            },
        }
    }

    /// The switch controlling this store.
    pub fn switch(&self) -> FaultSwitch {
        self.switch.clone()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    async fn apply<R>(
        &self,
        op: impl std::future::Future<Output = Result<R, StoreError>>,
    ) -> Result<R, StoreError> {
        match self.switch.next() {
            Fault::None => op.await,
            Fault::Unavailable => Err(StoreError::Unavailable(
                "injected: connection refused".into(),
            )),
            Fault::Backend => Err(StoreError::Backend("injected: command refused".into())),
            Fault::Undecodable => Err(StoreError::Decode("injected: unknown field".into())),
            Fault::Conflict => Err(StoreError::Conflict(
                "injected: session kept changing".into(),
            )),
            Fault::Hang => std::future::pending().await,
            Fault::LoseReply => {
                let _ = op.await;
                Err(StoreError::Timeout(Duration::ZERO))
            }
        }
    }
}

#[async_trait]
impl<T: SessionData, S: Store<T>> Store<T> for FaultyStore<S> {
    async fn load(&self, cookie_value: &str) -> Result<Option<Record<T>>, StoreError> {
        self.apply(self.inner.load(cookie_value)).await
    }
    async fn save(&self, save: Save<'_, T>) -> Result<SaveOutcome, StoreError> {
        self.apply(self.inner.save(save)).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.apply(self.inner.delete(id)).await
    }
    async fn delete_following(&self, id: &SessionId) -> Result<crate::store::Followed, StoreError> {
        self.apply(self.inner.delete_following(id)).await
    }
    fn on_removed(&self, listener: RemovalListener) {
        self.inner.on_removed(listener)
    }

    fn holds_sessions(&self) -> bool {
        self.inner.holds_sessions()
    }
}

#[async_trait]
impl<T: SessionData, S: QueryStore<T>> QueryStore<T> for FaultyStore<S> {
    /// The fault applies to the scan as a whole: the stream's first item is
    /// the injected error (a hung store: a stream that never yields).
    fn iter(&self) -> BoxStream<'_, Result<Record<T, SessionHandle>, StoreError>> {
        stream::once(self.apply(std::future::ready(Ok(()))))
            .flat_map(move |started| match started {
                Ok(()) => self.inner.iter(),
                Err(e) => stream::once(std::future::ready(Err(e))).boxed(),
            })
            .boxed()
    }
    async fn find_by(
        &self,
        predicate: Predicate<'_, T>,
    ) -> Result<Vec<Record<T, SessionHandle>>, StoreError> {
        self.apply(self.inner.find_by(predicate)).await
    }
    async fn count(&self) -> Result<usize, StoreError> {
        self.apply(self.inner.count()).await
    }
    async fn bulk_delete(&self, predicate: Predicate<'_, T>) -> Result<Vec<Removed>, StoreError> {
        self.apply(self.inner.bulk_delete(predicate)).await
    }
    async fn by_owner(&self, owner: &str) -> Result<Vec<Record<T, SessionHandle>>, StoreError> {
        self.apply(self.inner.by_owner(owner)).await
    }
    async fn delete_owner(&self, owner: &str) -> Result<Vec<Removed>, StoreError> {
        self.apply(self.inner.delete_owner(owner)).await
    }
    async fn delete_handle(&self, handle: &SessionHandle) -> Result<bool, StoreError> {
        self.apply(self.inner.delete_handle(handle)).await
    }
}
