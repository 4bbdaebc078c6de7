//! Property tests of the parsers that read what a client or another process
//! sends, besides the cookie store's own (`cookie_proptest.rs`): the session
//! cookie lookup in `Cookie` headers, the forwarded-client parsing and the
//! trusted-proxy list behind client binding, and (feature `cluster`) the
//! invalidation messages any Redis client can publish. Arbitrary input never
//! panics and never yields something the input did not say.

use std::net::IpAddr;

use proptest::prelude::*;
use sessionkit::binding::{client_ip, ClientHeaders, ProxyHeader, TrustedProxies};
use sessionkit::http::{find_cookie_in, CookieLookup};

/// A cookie name or value the lookup accepts: visible ASCII without the
/// separators (`;`, `=`, `"`, `,` kept out for simplicity).
fn token() -> impl Strategy<Value = String> {
    "[!#-+\\--:<>-~]{1,40}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Any bytes in any number of headers: no panic, and a value found is
    /// visible ASCII cut out of one of the headers.
    #[test]
    fn a_cookie_lookup_never_panics_and_finds_only_what_a_header_holds(
        headers in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..4),
        name in "[ -~]{0,12}",
    ) {
        let found = find_cookie_in(headers.iter().map(Vec::as_slice), &name);
        if let CookieLookup::Found(v) = found {
            prop_assert!(v.bytes().all(|b| (0x21..0x7f).contains(&b)), "{v:?}");
            let in_header = |h: &Vec<u8>| h.windows(v.len()).any(|w| w == v.as_bytes());
            prop_assert!(v.is_empty() || headers.iter().any(in_header), "{v:?} is in no header");
        }
    }

    /// The session cookie among others, in any header and position, with
    /// any spacing and optional quotes: found, exactly; twice: ambiguous.
    #[test]
    fn the_session_cookie_is_found_among_others_wherever_it_sits(
        others in proptest::collection::vec((token(), token()), 0..6),
        value in token(),
        at in any::<prop::sample::Index>(),
        split in any::<prop::sample::Index>(),
        quoted in any::<bool>(),
        twice in any::<bool>(),
    ) {
        let name = "sid";
        let mut pairs: Vec<String> = others
            .iter()
            .filter(|(n, _)| n != name)
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let ours = if quoted { format!("{name}=\"{value}\"") } else { format!("{name}={value}") };
        pairs.insert(at.index(pairs.len() + 1), ours.clone());
        if twice {
            pairs.push(ours);
        }
        // Spread over two headers at a random pair boundary.
        let cut = split.index(pairs.len() + 1);
        let headers = [pairs[..cut].join("; "), pairs[cut..].join(";")];
        let found = find_cookie_in(headers.iter().map(|h| h.as_bytes()), name);
        if twice {
            prop_assert_eq!(found, CookieLookup::Ambiguous);
        } else {
            prop_assert_eq!(found, CookieLookup::Found(value.as_str()));
        }
    }

    /// Any trusted-proxy entries: a clear error or a list, never a panic.
    #[test]
    fn a_trusted_proxy_list_never_panics(entries in proptest::collection::vec(".{0,50}", 0..5)) {
        let _ = TrustedProxies::parse(&entries);
    }

    /// Any forwarding headers from behind a trusted proxy: no panic, and the
    /// client IP is the peer or an address one of the headers names.
    #[test]
    fn forwarded_headers_never_panic_and_name_the_client_or_nobody(
        forwarded in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..3),
        xff in proptest::collection::vec("[0-9a-f.:\\[\\], \"]{0,80}", 0..3),
        trust_peer in any::<bool>(),
        read_forwarded in any::<bool>(),
    ) {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let header = if read_forwarded { ProxyHeader::Forwarded } else { ProxyHeader::XForwardedFor };
        let proxies = if trust_peer {
            TrustedProxies::parse(["10.0.0.0/8"]).unwrap().header(header)
        } else {
            TrustedProxies::none()
        };
        let headers = ClientHeaders {
            forwarded: forwarded.iter().map(Vec::as_slice).collect(),
            x_forwarded_for: xff.iter().map(|s| s.as_bytes()).collect(),
            user_agent: None,
        };
        let ip = client_ip(Some(peer), &headers, &proxies);
        if !trust_peer {
            prop_assert_eq!(ip, Some(peer));
        }
        if let Some(ip) = ip.filter(|ip| *ip != peer) {
            let said = |h: &[u8]| String::from_utf8_lossy(h).to_ascii_lowercase();
            // Named in the header the proxies write, never in the other one.
            let read = if read_forwarded { &headers.forwarded } else { &headers.x_forwarded_for };
            let text: String = read.iter().map(|h| said(h)).collect();
            let v4 = ip.to_string();
            prop_assert!(
                text.contains(&v4) || matches!(ip, IpAddr::V6(_)),
                "{ip} is in no header: {text:?}"
            );
        }
    }
}

#[cfg(feature = "cluster")]
mod cluster_messages {
    use proptest::prelude::*;
    use sessionkit::store::cluster::{Invalidation, MessageKey, MESSAGE_LEN};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// What any Redis client can publish on the channel: never accepted
        /// without the fleet's key, never a panic, whatever its length.
        #[test]
        fn arbitrary_messages_are_rejected_without_panicking(
            bytes in prop_oneof![
                proptest::collection::vec(any::<u8>(), MESSAGE_LEN..=MESSAGE_LEN),
                proptest::collection::vec(any::<u8>(), 0..300),
            ],
            key in any::<[u8; 32]>(),
        ) {
            let key = MessageKey::new(key);
            prop_assert!(Invalidation::decode(&bytes, &key, "sessionkit:invalidate").is_err());
        }
    }
}
