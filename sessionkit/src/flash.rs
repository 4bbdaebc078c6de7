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
    pub fn set(&self, key: impl Into<String>, value: impl Into<String>) {
        self.session.with_state(|s| {
            s.record.flash.push(FlashMessage {
                key: key.into(),
                value: value.into(),
            });
            s.dirty = true;
        })
    }

    /// Shows a message in this request only; it is never stored.
    pub fn now(&self, key: impl Into<String>, value: impl Into<String>) {
        self.session.with_state(|s| {
            s.visible_flash.push(FlashMessage {
                key: key.into(),
                value: value.into(),
            })
        })
    }

    /// Takes every message visible in this request (those set by earlier
    /// requests and those added with [`Flash::now`]), consuming them.
    pub fn take_all(&self) -> Vec<FlashMessage> {
        self.session.with_state(|s| {
            let taken = std::mem::take(&mut s.visible_flash);
            if s.incoming_flash > 0 {
                s.dirty = true;
                s.incoming_flash = 0;
            }
            taken
        })
    }

    /// Takes the first visible message with this key, consuming it.
    pub fn take(&self, key: &str) -> Option<String> {
        self.session.with_state(|s| {
            let pos = s.visible_flash.iter().position(|m| m.key == key)?;
            let msg = s.visible_flash.remove(pos);
            if pos < s.incoming_flash {
                s.incoming_flash -= 1;
                s.dirty = true;
            }
            Some(msg.value)
        })
    }

    /// Whether any message is visible in this request (does not consume).
    pub fn is_empty(&self) -> bool {
        self.session.with_state(|s| s.visible_flash.is_empty())
    }
}
