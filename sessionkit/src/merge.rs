//! Reconciling concurrent updates of one session.
//!
//! Two requests that load the same session version and both change it must
//! not lose either change. Stores detect the conflict with the record's
//! `version`; they then call [`reapply_changes`], which takes the latest stored
//! data and applies onto it only the top-level fields this request changed
//! (compared with the data it loaded). The same field changed by both: the
//! later writer wins.
//!
//! This needs the data to serialize as a map (a struct); other shapes fall back
//! to "this request's value wins". The work happens only on a conflict.

use serde_json::Value;

use crate::record::SessionData;

/// Applies the top-level fields that differ between `base` (as loaded) and
/// `mine` (as this request left it) onto `latest` (as now stored).
///
/// ```
/// use sessionkit::merge::reapply_changes;
/// #[derive(serde::Serialize, serde::Deserialize, Default, Clone, PartialEq, Debug)]
/// struct D { a: u32, b: u32 }
/// let base = D { a: 0, b: 0 };
/// let mine = D { a: 1, b: 0 };     // this request changed `a`
/// let latest = D { a: 0, b: 7 };   // another request changed `b` meanwhile
/// assert_eq!(reapply_changes(&base, &mine, &latest), D { a: 1, b: 7 });
/// ```
pub fn reapply_changes<T: SessionData>(base: &T, mine: &T, latest: &T) -> T {
    let (
        Ok(Value::Object(base_map)),
        Ok(Value::Object(mine_map)),
        Ok(Value::Object(mut latest_map)),
    ) = (
        serde_json::to_value(base),
        serde_json::to_value(mine),
        serde_json::to_value(latest),
    )
    else {
        return mine.clone();
    };
    for key in base_map.keys() {
        // A field this request removed (e.g. an `Option` skipped when `None`).
        if !mine_map.contains_key(key) {
            latest_map.remove(key);
        }
    }
    for (key, value) in mine_map {
        if base_map.get(&key) != Some(&value) {
            latest_map.insert(key, value);
        }
    }
    serde_json::from_value(Value::Object(latest_map)).unwrap_or_else(|_| mine.clone())
}
