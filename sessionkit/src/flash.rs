//! Flash messages: short notes for the user that survive exactly until read.
//!
//! - [`Flash::set`] keeps a message for a **later** request (after a redirect);
//! - [`Flash::now`] shows a message in **this** request only;
//! - reading ([`Flash::take`], [`Flash::take_all`]) consumes what it returns.
//!
//! Messages are kept in the session record, so they work across processes
//! with any server-side store and inside sealed cookies.
//!
//! ```
//! # use sessionkit::{Session, ManualClock};
//! # let session: Session<()> = Session::detached();
//! session.flash().set("notice", "Saved");      // for the next request
//! session.flash().now("hint", "Typing...");    // for this one
//! let now: Vec<_> = session.flash().take_all();
//! assert_eq!(now.len(), 1);
//! assert_eq!(now[0].key, "hint");
//! ```

use serde::{Deserialize, Serialize};

use crate::session::Session;

/// The most flash messages a session keeps unread: past it, the oldest
/// are dropped when the session is saved. A client that never reads its
/// flash (an API client that does not follow the redirect that would show
/// it) would otherwise grow the record on every write, until a cookie
/// store's cookie passes the browser's limit and every save fails.
pub const FLASH_LIMIT: usize = 32;

/// Drops the oldest messages past [`FLASH_LIMIT`].
pub(crate) fn keep_newest(flash: &mut Vec<FlashMessage>) {
    if let Some(excess) = flash.len().checked_sub(FLASH_LIMIT) {
        flash.drain(..excess);
    }
}

/// One flash message: a key (often a level such as `notice`) and a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlashMessage {
    /// What kind of message this is (`notice`, `error`, a field name…).
    pub key: String,
    /// The text.
    pub value: String,
}

/// Flash access for one request, from [`Session::flash`].
pub struct Flash<'a, T: crate::SessionData> {
    pub(crate) session: &'a Session<T>,
}

impl<T: crate::SessionData> Flash<'_, T> {
    /// Keeps a message for a later request (readable on the next one that reads flash).
    /// At most [`FLASH_LIMIT`] unread messages are kept; the oldest go first.
    pub fn set(&self, key: impl Into<String>, value: impl Into<String>) {
        self.session.with_meta(|m| {
            m.record.flash.push(FlashMessage {
                key: key.into(),
                value: value.into(),
            })
        });
        self.session.mark_dirty();
    }

    /// Shows a message in this request only; it is never stored.
    pub fn now(&self, key: impl Into<String>, value: impl Into<String>) {
        self.session.with_meta(|m| {
            m.visible_flash.push(FlashMessage {
                key: key.into(),
                value: value.into(),
            })
        })
    }

    /// Takes every message visible in this request (those set by earlier
    /// requests and those added with [`Flash::now`]), consuming them.
    pub fn take_all(&self) -> Vec<FlashMessage> {
        let (taken, consumed) = self.session.with_meta(|m| {
            let consumed = m.incoming_flash > 0;
            let taken = std::mem::take(&mut m.visible_flash);
            m.flash_taken.extend_from_slice(&taken[..m.incoming_flash]);
            m.incoming_flash = 0;
            (taken, consumed)
        });
        if consumed {
            self.session.mark_dirty();
        }
        taken
    }

    /// Takes the first visible message with this key, consuming it.
    pub fn take(&self, key: &str) -> Option<String> {
        let (value, consumed) = self.session.with_meta(|m| {
            let pos = m.visible_flash.iter().position(|f| f.key == key)?;
            let msg = m.visible_flash.remove(pos);
            let consumed = pos < m.incoming_flash;
            if consumed {
                m.incoming_flash -= 1;
                m.flash_taken.push(msg.clone());
            }
            Some((msg.value, consumed))
        })?;
        if consumed {
            self.session.mark_dirty();
        }
        Some(value)
    }

    /// Whether no message is visible in this request (does not consume).
    pub fn is_empty(&self) -> bool {
        self.session.with_meta(|m| m.visible_flash.is_empty())
    }
}
