//! Errors: what a store reports, and what the HTTP edge turns them into.

use std::time::Duration;

/// An error from a session store.
///
/// [`StoreError::is_transient`] tells retry logic and circuit breakers which
/// errors are worth another try; [`StoreError::kind`] is a stable label for
/// metrics. Messages never contain session ids or session data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached or dropped the connection.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The operation did not finish within its time bound.
    #[error("session store operation timed out after {0:?}")]
    Timeout(Duration),
    /// The circuit breaker is open: the store is failing and is not being called.
    #[error("session store circuit is open; failing fast")]
    CircuitOpen,
    /// A stored value could not be decoded (corrupt, foreign, or from an incompatible version).
    #[error("stored session could not be decoded: {0}")]
    Decode(String),
    /// The session could not be encoded.
    #[error("session could not be encoded: {0}")]
    Encode(String),
    /// The sealed cookie would exceed the browser limit.
    #[error("session cookie would be {size} bytes, over the {limit}-byte limit")]
    CookieTooLarge {
        /// Size of the full `Set-Cookie` value in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The store cannot do this (e.g. listing sessions of a cookie store).
    #[error("this session store does not support {0}")]
    Unsupported(&'static str),
    /// The backend refused the operation (a non-transient server error).
    #[error("session store error: {0}")]
    Backend(String),
    /// The save lost to other writes of the same session: a create found
    /// its id taken (never overwritten), or an update kept meeting newer
    /// versions past the store's merge retries. About one session, not the
    /// store's health: circuit breakers do not count it (a client hammering
    /// one session must not open the breaker for everyone).
    #[error("session save conflict: {0}")]
    Conflict(String),
    /// A bulk operation (`bulk_delete`, `delete_owner`) failed part-way:
    /// the sessions in `removed` were deleted before `source` stopped it.
    /// [`crate::Sessions`] still fires `on_deleted` for them; the
    /// classification ([`StoreError::is_transient`], [`StoreError::kind`]…)
    /// is `source`'s.
    #[error("{source} (after removing {} sessions)", .removed.len())]
    Partial {
        /// What was deleted before the error.
        removed: Vec<crate::store::Removed>,
        /// What stopped the operation.
        source: Box<StoreError>,
    },
}

impl StoreError {
    /// Whether trying again later may succeed (connection trouble, timeouts).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Partial { source, .. } => source.is_transient(),
            _ => matches!(self, StoreError::Unavailable(_) | StoreError::Timeout(_)),
        }
    }

    /// Whether the error says something about the store's health (for circuit
    /// breakers). Bad data and size limits are about one value, not the store.
    pub fn is_store_failure(&self) -> bool {
        match self {
            StoreError::Partial { source, .. } => source.is_store_failure(),
            _ => matches!(
                self,
                StoreError::Unavailable(_) | StoreError::Timeout(_) | StoreError::Backend(_)
            ),
        }
    }

    /// The error itself, or what stopped a [`StoreError::Partial`] operation.
    pub fn cause(&self) -> &StoreError {
        match self {
            StoreError::Partial { source, .. } => source.cause(),
            e => e,
        }
    }

    /// The sessions a failed bulk operation removed before it stopped
    /// (empty unless [`StoreError::Partial`]).
    pub fn removed(&self) -> &[crate::store::Removed] {
        match self {
            StoreError::Partial { removed, .. } => removed,
            _ => &[],
        }
    }

    /// This error, after `removed` were deleted by the same operation: a
    /// [`StoreError::Partial`] unless nothing was (`removed` first, then
    /// what an inner `Partial` already carried).
    #[must_use]
    pub fn after_removing(self, mut removed: Vec<crate::store::Removed>) -> StoreError {
        let (inner, source) = self.take_removed();
        removed.extend(inner);
        if removed.is_empty() {
            source
        } else {
            StoreError::Partial {
                removed,
                source: Box::new(source),
            }
        }
    }

    /// Splits a [`StoreError::Partial`] into what it removed and what
    /// stopped it; any other error removed nothing.
    #[must_use]
    pub fn take_removed(self) -> (Vec<crate::store::Removed>, StoreError) {
        match self {
            StoreError::Partial { removed, source } => (removed, *source),
            e => (Vec::new(), e),
        }
    }

    /// A stable, low-cardinality label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Timeout(_) => "timeout",
            StoreError::CircuitOpen => "circuit_open",
            StoreError::Decode(_) => "decode",
            StoreError::Encode(_) => "encode",
            StoreError::CookieTooLarge { .. } => "cookie_too_large",
            StoreError::Unsupported(_) => "unsupported",
            StoreError::Backend(_) => "backend",
            StoreError::Conflict(_) => "conflict",
            StoreError::Partial { source, .. } => source.kind(),
        }
    }
}
