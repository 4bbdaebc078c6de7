//! One invalidation message on the bus: who sent it, which session (by key
//! hash), which version, what happened, authenticated with HMAC-SHA256.
//!
//! Fixed layout, 93 bytes:
//!
//! | bytes  | field                                                        |
//! |--------|--------------------------------------------------------------|
//! | 0..4   | `SKI1` (format marker)                                       |
//! | 4      | kind ([`InvalidationKind`])                                  |
//! | 5..21  | sender's [`NodeId`]                                          |
//! | 21..29 | version now stored (big endian; 0 for removals)              |
//! | 29..61 | SHA-256 of the session id (the store's key hash)             |
//! | 61..93 | HMAC-SHA256 over the channel name, a 0 byte, and bytes 0..61 |
//!
//! The tag covers the channel name so a message cannot be replayed from one
//! application's channel into another's that happens to share the key. A
//! replayed message (same channel) can only make nodes drop cache entries,
//! which costs a Redis read and never serves stale data.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of an encoded message.
pub const MESSAGE_LEN: usize = 93;
const MAGIC: &[u8; 4] = b"SKI1";
const BODY_LEN: usize = 61;

/// The key that authenticates bus messages: 32 bytes shared by every node,
/// plus any previous keys still accepted while a rotation rolls out.
///
/// Messages are tagged with the current key and accepted under the current
/// key or any previous one, so nodes can change keys one at a time (see
/// [`MessageKey::accept_previous`]). `Debug` never prints a key.
#[derive(Clone)]
pub struct MessageKey {
    /// Whether any key (current or previous) is all zeros, which
    /// [`ClusterOptions`](super::ClusterOptions) validation refuses.
    any_all_zero: bool,
    /// HMAC-SHA256 with the key already absorbed (its inner and outer
    /// padded-key blocks hashed once, here): each message then costs three
    /// SHA-256 compressions instead of five.
    keyed: Hmac<Sha256>,
    /// The previous keys, absorbed the same way; tried in order only when
    /// the current key's tag does not verify.
    previous: Vec<Hmac<Sha256>>,
}

fn absorbed(bytes: &[u8; 32]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length: this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(bytes)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

impl MessageKey {
    /// Wraps 32 secret bytes. All-zero keys are refused by
    /// [`ClusterOptions`](super::ClusterOptions) validation.
    pub fn new(bytes: [u8; 32]) -> Self {
        MessageKey {
            any_all_zero: bytes.iter().all(|&b| b == 0),
            keyed: absorbed(&bytes),
            previous: Vec::new(),
        }
    }

    /// Also accepts messages tagged with `bytes` (a previous key, or the
    /// next one); this node still tags its own with the current key.
    ///
    /// Rotating on a cluster whose nodes restart one at a time takes two
    /// deploys, so that every message is accepted by every node at every
    /// moment: first add the new key here on every node (old key current),
    /// then make it current (old key here), and later drop the old key.
    /// A node that cannot verify a message ignores it, and would go on
    /// serving from its cache a session another node logged out.
    ///
    /// ```
    /// use sessionkit::store::cluster::MessageKey;
    /// let key = MessageKey::new([7; 32]).accept_previous([8; 32]);
    /// # let _ = key;
    /// ```
    pub fn accept_previous(mut self, bytes: [u8; 32]) -> Self {
        self.any_all_zero |= bytes.iter().all(|&b| b == 0);
        self.previous.push(absorbed(&bytes));
        self
    }

    /// The key ring's cluster-messages subkeys (HKDF purpose
    /// [`KeyPurpose::ClusterMessages`](crate::keys::KeyPurpose::ClusterMessages)):
    /// the current key's tags this node's messages, every key in the ring
    /// is accepted. So the ring's rotation (new secret first added as a
    /// previous one on every node, then made current) keeps the nodes'
    /// messages flowing while they restart one at a time.
    #[cfg(feature = "crypto")]
    pub fn from_key_ring(ring: &crate::keys::KeyRing) -> Self {
        let mut keys = ring.subkeys(crate::keys::KeyPurpose::ClusterMessages);
        let (_, current) = keys
            .next()
            .unwrap_or_else(|| unreachable!("a key ring always holds its current key"));
        let mut key = MessageKey::new(*current.expose_secret());
        for (_, previous) in keys {
            key = key.accept_previous(*previous.expose_secret());
        }
        key
    }

    pub(crate) fn is_all_zero(&self) -> bool {
        self.any_all_zero
    }

    fn mac(keyed: &Hmac<Sha256>, channel: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = keyed.clone();
        mac.update(channel.as_bytes());
        mac.update(&[0]);
        mac.update(body);
        mac
    }

    /// The tag this node puts on `body`.
    fn tag(&self, channel: &str, body: &[u8]) -> [u8; 32] {
        Self::mac(&self.keyed, channel, body)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Whether `tag` is `body`'s under the current key or a previous one
    /// (each comparison in constant time).
    fn verifies(&self, channel: &str, body: &[u8], tag: &[u8]) -> bool {
        std::iter::once(&self.keyed)
            .chain(&self.previous)
            .any(|keyed| Self::mac(keyed, channel, body).verify_slice(tag).is_ok())
    }
}

impl From<[u8; 32]> for MessageKey {
    fn from(bytes: [u8; 32]) -> Self {
        MessageKey::new(bytes)
    }
}

impl std::fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageKey(<secret>)")
    }
}

/// Identifies one node (one [`ClusteredStore`](super::ClusteredStore)
/// instance) on the bus, so it can skip its own messages.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId([u8; 16]);

impl NodeId {
    /// A fresh random id (the default).
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the OS random number generator is unavailable");
        NodeId(bytes)
    }

    /// A stable id derived from a name (host name, pod name…). Two
    /// stores with the same name would ignore each other's messages: give
    /// every store its own (one per actix-web worker, say, when each
    /// worker builds one).
    pub fn from_name(name: &str) -> Self {
        use sha2::Digest;
        let digest = Sha256::digest(name.as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        NodeId(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl std::fmt::Debug for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeId(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// What happened to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum InvalidationKind {
    /// Written: `version` is the version now stored. Holders of an older
    /// version drop it; holders of this one or a newer one keep theirs.
    Saved = 1,
    /// Deleted (logout, destroy).
    Deleted = 2,
    /// Moved to a new id by `regenerate_id`: the old id is dead.
    Regenerated = 3,
    /// Removed by `bulk_delete`.
    BulkDeleted = 4,
    /// Removed by an owner revoke (`delete_owner`).
    OwnerRevoked = 5,
}

impl InvalidationKind {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Saved,
            2 => Self::Deleted,
            3 => Self::Regenerated,
            4 => Self::BulkDeleted,
            5 => Self::OwnerRevoked,
            _ => return None,
        })
    }

    /// A stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Saved => "saved",
            Self::Deleted => "deleted",
            Self::Regenerated => "regenerated",
            Self::BulkDeleted => "bulk_deleted",
            Self::OwnerRevoked => "owner_revoked",
        }
    }
}

/// A decoded, authenticated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalidation {
    /// The sender.
    pub node: NodeId,
    /// What happened.
    pub kind: InvalidationKind,
    /// The version now stored (meaningful for [`InvalidationKind::Saved`]).
    pub version: u64,
    /// SHA-256 of the session id.
    pub key: [u8; 32],
}

/// Why a message was ignored (a metrics label; nothing of the message is kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Wrong length or format marker.
    Malformed,
    /// The tag does not verify: forged, or sent with another key.
    BadTag,
    /// Unknown kind byte (authentic, but from a newer format).
    UnknownKind,
}

impl Rejection {
    /// A stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadTag => "bad_tag",
            Self::UnknownKind => "unknown_kind",
        }
    }
}

impl Invalidation {
    /// The message bytes, tagged for `channel` under `key`.
    pub fn encode(&self, key: &MessageKey, channel: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(MESSAGE_LEN);
        out.extend_from_slice(MAGIC);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.node.0);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.key);
        let tag = key.tag(channel, &out);
        out.extend_from_slice(&tag);
        out
    }

    /// The sender's node id, read without checking the tag: only to skip
    /// this node's own messages before paying for the check. (A forged
    /// message that names this node is skipped too, which is what checking
    /// it would have led to: it changes nothing.)
    pub(crate) fn sender(bytes: &[u8]) -> Option<NodeId> {
        if bytes.len() != MESSAGE_LEN || &bytes[..4] != MAGIC {
            return None;
        }
        let mut node = [0u8; 16];
        node.copy_from_slice(&bytes[5..21]);
        Some(NodeId(node))
    }

    /// Checks and decodes a message: length and marker first, then the tag
    /// (in constant time), then the fields.
    pub fn decode(bytes: &[u8], key: &MessageKey, channel: &str) -> Result<Self, Rejection> {
        if bytes.len() != MESSAGE_LEN || &bytes[..4] != MAGIC {
            return Err(Rejection::Malformed);
        }
        let (body, tag) = bytes.split_at(BODY_LEN);
        if !key.verifies(channel, body, tag) {
            return Err(Rejection::BadTag);
        }
        let kind = InvalidationKind::from_byte(body[4]).ok_or(Rejection::UnknownKind)?;
        let mut node = [0u8; 16];
        node.copy_from_slice(&body[5..21]);
        let mut version = [0u8; 8];
        version.copy_from_slice(&body[21..29]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&body[29..61]);
        Ok(Invalidation {
            node: NodeId(node),
            kind,
            version: u64::from_be_bytes(version),
            key: hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Invalidation {
        Invalidation {
            node: NodeId::random(),
            kind: InvalidationKind::Saved,
            version: 7,
            key: [9; 32],
        }
    }

    #[test]
    fn the_tag_is_plain_hmac_sha256_and_the_sender_is_readable_before_it() {
        let m = sample();
        let bytes = m.encode(&MessageKey::new([5; 32]), "chan");
        let mut fresh = <Hmac<Sha256> as Mac>::new_from_slice(&[5; 32]).unwrap();
        fresh.update(b"chan\0");
        fresh.update(&bytes[..BODY_LEN]);
        assert_eq!(&bytes[BODY_LEN..], &fresh.finalize().into_bytes()[..]);
        assert_eq!(Invalidation::sender(&bytes), Some(m.node));
        assert_eq!(Invalidation::sender(&bytes[1..]), None);
    }

    #[test]
    fn a_message_round_trips_under_its_key_and_channel() {
        let key = MessageKey::new([1; 32]);
        let m = sample();
        let bytes = m.encode(&key, "ch");
        assert_eq!(bytes.len(), MESSAGE_LEN);
        assert_eq!(Invalidation::decode(&bytes, &key, "ch"), Ok(m));
    }

    #[test]
    fn forged_or_replayed_elsewhere_messages_are_rejected() {
        let key = MessageKey::new([1; 32]);
        let bytes = sample().encode(&key, "ch");
        let other = MessageKey::new([2; 32]);
        assert_eq!(
            Invalidation::decode(&bytes, &other, "ch"),
            Err(Rejection::BadTag)
        );
        assert_eq!(
            Invalidation::decode(&bytes, &key, "other-channel"),
            Err(Rejection::BadTag)
        );
        // Flip each bit of the body: never accepted.
        for i in 4..BODY_LEN * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(Invalidation::decode(&b, &key, "ch").is_err(), "bit {i}");
        }
    }

    #[test]
    fn hostile_bytes_are_rejected_without_panicking() {
        let key = MessageKey::new([1; 32]);
        let long = vec![b'S'; 10_000];
        let mut wrong_magic = sample().encode(&key, "ch");
        wrong_magic[0] = b'X';
        for bad in [&b""[..], b"SKI1", &long, &wrong_magic, &[0u8; MESSAGE_LEN]] {
            assert!(Invalidation::decode(bad, &key, "ch").is_err());
        }
    }

    #[test]
    fn an_authentic_message_of_an_unknown_kind_is_rejected() {
        let key = MessageKey::new([1; 32]);
        let mut body = sample().encode(&key, "ch");
        body.truncate(BODY_LEN);
        body[4] = 99;
        let tag = key.tag("ch", &body);
        body.extend_from_slice(&tag);
        assert_eq!(
            Invalidation::decode(&body, &key, "ch"),
            Err(Rejection::UnknownKind)
        );
    }

    #[test]
    fn debug_output_hides_the_key() {
        assert!(!format!("{:?}", MessageKey::new([0xab; 32])).contains("ab"));
        let both = MessageKey::new([0xab; 32]).accept_previous([0xcd; 32]);
        let printed = format!("{both:?}");
        assert!(
            !printed.contains("ab") && !printed.contains("cd"),
            "{printed}"
        );
    }

    #[test]
    fn a_rolling_rotation_keeps_every_message_accepted() {
        let (old, new) = ([1; 32], [2; 32]);
        let m = sample();
        // Deploy 1: every node accepts the new key, tags with the old one.
        let before = MessageKey::new(old);
        let accepting = MessageKey::new(old).accept_previous(new);
        // Deploy 2: nodes tag with the new key, still accept the old one.
        let after = MessageKey::new(new).accept_previous(old);
        for (sender, receiver) in [
            (&before, &accepting),
            (&accepting, &before),
            (&accepting, &after),
            (&after, &accepting),
            (&after, &MessageKey::new(new)),
        ] {
            let bytes = m.encode(sender, "ch");
            assert_eq!(Invalidation::decode(&bytes, receiver, "ch"), Ok(m));
        }
        // A node that has not yet heard of the new key cannot check it:
        // the reason for the first deploy.
        let bytes = m.encode(&after, "ch");
        assert_eq!(
            Invalidation::decode(&bytes, &before, "ch"),
            Err(Rejection::BadTag)
        );
        // Tags are always made with the current key.
        assert_eq!(m.encode(&accepting, "ch"), m.encode(&before, "ch"));
        // A key in neither place is refused.
        let stranger = MessageKey::new([3; 32]).accept_previous(old);
        assert_eq!(
            Invalidation::decode(&m.encode(&stranger, "ch"), &after, "ch"),
            Err(Rejection::BadTag)
        );
    }

    #[test]
    fn an_all_zero_previous_key_is_caught_like_a_current_one() {
        assert!(MessageKey::new([0; 32]).is_all_zero());
        assert!(MessageKey::new([1; 32])
            .accept_previous([0; 32])
            .is_all_zero());
        assert!(!MessageKey::new([1; 32])
            .accept_previous([2; 32])
            .is_all_zero());
    }

    #[cfg(feature = "crypto")]
    #[test]
    fn a_key_ring_tags_with_its_current_key_and_accepts_its_previous_ones() {
        use crate::keys::KeyRing;
        let old_secret = "the first secret, at least 32 bytes long";
        let new_secret = "the second secret, at least 32 bytes long";
        let old_ring = KeyRing::builder().current(1, old_secret).build().unwrap();
        let adding = KeyRing::builder()
            .current(1, old_secret)
            .previous(2, new_secret)
            .build()
            .unwrap();
        let rotated = KeyRing::builder()
            .current(2, new_secret)
            .previous(1, old_secret)
            .build()
            .unwrap();
        let m = sample();
        let (old, adding, rotated) = (
            MessageKey::from_key_ring(&old_ring),
            MessageKey::from_key_ring(&adding),
            MessageKey::from_key_ring(&rotated),
        );
        for (sender, receiver) in [(&old, &adding), (&adding, &rotated), (&rotated, &adding)] {
            let bytes = m.encode(sender, "ch");
            assert_eq!(Invalidation::decode(&bytes, receiver, "ch"), Ok(m));
        }
        assert_eq!(m.encode(&adding, "ch"), m.encode(&old, "ch"));
    }
}
