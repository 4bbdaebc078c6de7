//! Client binding: tie a session to the client's IP address and/or User-Agent.
//!
//! A stolen cookie is then useless from another network or browser. The
//! record keeps a keyed fingerprint (HMAC-SHA256 under a key derived for this
//! purpose), never the IP or the User-Agent themselves.
//!
//! The client IP comes from the socket, or — only when the socket peer is one
//! of the configured trusted proxies — from the one forwarding header those
//! proxies write ([`ProxyHeader`]: `X-Forwarded-For` by default, or
//! `Forwarded`, RFC 7239), read right to left, skipping trusted proxies. A
//! header sent by a client that is not a trusted proxy is ignored, and so is
//! the other forwarding header even behind a trusted proxy: most proxies
//! append to one of them and pass the other through as the client sent it,
//! so believing both would let a client forge its address.
//!
//! ```
//! use std::net::IpAddr;
//! use http::HeaderMap;
//! use sessionkit::binding::{client_ip, ClientHeaders, TrustedProxies};
//!
//! let proxies = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
//! let mut headers = HeaderMap::new();
//! headers.insert("x-forwarded-for", "203.0.113.7, 10.0.0.2".parse().unwrap());
//! let peer: IpAddr = "10.0.0.1".parse().unwrap();
//! let headers = ClientHeaders::from_header_map(&headers);
//! assert_eq!(client_ip(Some(peer), &headers, &proxies), Some("203.0.113.7".parse().unwrap()));
//! // The same header from an untrusted peer is ignored.
//! let peer: IpAddr = "198.51.100.1".parse().unwrap();
//! assert_eq!(client_ip(Some(peer), &headers, &proxies), Some(peer));
//! ```
//!
//! Behind proxies that write `Forwarded` instead, say so; `X-Forwarded-For`
//! is then ignored:
//!
//! ```
//! # use std::net::IpAddr;
//! # use http::HeaderMap;
//! use sessionkit::binding::{client_ip, ClientHeaders, ProxyHeader, TrustedProxies};
//!
//! let proxies = TrustedProxies::parse(["10.0.0.0/8"]).unwrap().header(ProxyHeader::Forwarded);
//! let mut headers = HeaderMap::new();
//! headers.insert("forwarded", "for=203.0.113.7".parse().unwrap());
//! headers.insert("x-forwarded-for", "192.0.2.66".parse().unwrap());
//! let peer: IpAddr = "10.0.0.1".parse().unwrap();
//! let headers = ClientHeaders::from_header_map(&headers);
//! assert_eq!(client_ip(Some(peer), &headers, &proxies), Some("203.0.113.7".parse().unwrap()));
//! ```

use std::net::IpAddr;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use http::HeaderMap;
use ipnet::{IpNet, Ipv6Net};
use sha2::Sha256;

/// The networks whose forwarding header is believed, and which header that is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ProxyHeader,
}

/// The forwarding header trusted proxies write the client address into. Only
/// this one is read: the other is passed through by most proxies exactly as
/// the client sent it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProxyHeader {
    /// `X-Forwarded-For` (nginx's `$proxy_add_x_forwarded_for`, HAProxy's
    /// `option forwardfor`, AWS and Google load balancers, Traefik, Caddy).
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239), for proxies configured to write it (e.g.
    /// Envoy or nginx set up to do so).
    Forwarded,
}

/// A trusted-proxy entry that is neither an IP address nor a CIDR network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("trusted proxy {0:?} is not an IP address or CIDR network (e.g. 10.0.0.0/8)")]
pub struct InvalidProxy(pub String);

impl TrustedProxies {
    /// No trusted proxies: the socket address is the client address.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses addresses (`10.0.0.1`) and networks (`10.0.0.0/8`, `fd00::/8`).
    pub fn parse<I, S>(entries: I) -> Result<Self, InvalidProxy>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        entries
            .into_iter()
            .map(|e| {
                let e = e.as_ref().trim();
                IpNet::from_str(e)
                    .or_else(|_| IpAddr::from_str(e).map(IpNet::from))
                    .map(canonical_net)
                    .map_err(|_| InvalidProxy(e.to_owned()))
            })
            .collect::<Result<_, _>>()
            .map(|nets| TrustedProxies {
                nets,
                header: ProxyHeader::default(),
            })
    }

    /// The forwarding header these proxies write (default
    /// [`ProxyHeader::XForwardedFor`]).
    pub fn header(mut self, header: ProxyHeader) -> Self {
        self.header = header;
        self
    }

    /// The forwarding header that is read.
    pub fn proxy_header(&self) -> ProxyHeader {
        self.header
    }

    /// Whether `ip` belongs to a trusted proxy.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        let ip = canonical(*ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The first entry broader than any network of proxies: an IPv4 prefix
    /// shorter than /8, an IPv6 one shorter than /16 (a /12 is a regional
    /// registry's share of the internet) except inside the private
    /// `fc00::/7` and link-local `fe80::/10`, which may be trusted whole.
    /// 10.0.0.0/8, fc00::/7 and the widest published CDN ranges pass. Every client inside a
    /// trusted range can claim any address, so such an entry (`0.0.0.0/0`
    /// above all) turns IP binding off for most of the internet;
    /// [`crate::ConfigBuilder::trusted_proxies`] refuses it unless
    /// [`crate::ConfigBuilder::dangerously_trust_broad_proxy_ranges`] is set.
    ///
    /// ```
    /// use sessionkit::binding::TrustedProxies;
    /// assert!(TrustedProxies::parse(["10.0.0.0/8", "fc00::/7"]).unwrap().too_broad().is_none());
    /// let europe = TrustedProxies::parse(["2a00::/12"]).unwrap();
    /// assert_eq!(europe.too_broad().as_deref(), Some("2a00::/12"));
    /// let all = TrustedProxies::parse(["10.0.0.1", "0.0.0.0/0"]).unwrap();
    /// assert_eq!(all.too_broad().as_deref(), Some("0.0.0.0/0"));
    /// ```
    pub fn too_broad(&self) -> Option<String> {
        self.nets
            .iter()
            .find(|n| match n {
                IpNet::V4(v4) => v4.prefix_len() < 8,
                IpNet::V6(v6) => {
                    let local =
                        |net: &str| Ipv6Net::from_str(net).is_ok_and(|local| local.contains(v6));
                    v6.prefix_len() < 16 && !(local("fc00::/7") || local("fe80::/10"))
                }
            })
            .map(ToString::to_string)
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.5`, `::ffff:10.0.0.0/104`)
/// as the IPv4 network it maps: peers are compared as IPv4 addresses
/// ([`canonical`]), and a network never contains an address of the other
/// family, so a mapped entry would match no peer.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Parses one hop of `X-Forwarded-For` or a `for=` value of `Forwarded`:
/// `1.2.3.4`, `1.2.3.4:80`, `"[2001:db8::1]:443"`, `2001:db8::1`.
fn parse_hop(raw: &str) -> Option<IpAddr> {
    let s = raw.trim().trim_matches('"');
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        if !(after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.parse::<u16>().is_ok()))
        {
            return None;
        }
        return IpAddr::from_str(addr).ok().map(canonical);
    }
    if let Ok(ip) = IpAddr::from_str(s) {
        return Some(canonical(ip));
    }
    // IPv4 with a port.
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    IpAddr::from_str(host).ok().map(canonical)
}

/// The request headers binding looks at, as raw bytes, so every framework's
/// header types can fill it.
#[derive(Debug, Clone, Default)]
pub struct ClientHeaders<'a> {
    /// Every `Forwarded` header value, in order.
    pub forwarded: Vec<&'a [u8]>,
    /// Every `X-Forwarded-For` header value, in order.
    pub x_forwarded_for: Vec<&'a [u8]>,
    /// The `User-Agent` header.
    pub user_agent: Option<&'a [u8]>,
}

impl<'a> ClientHeaders<'a> {
    /// Reads them from an `http` 1 header map.
    pub fn from_header_map(headers: &'a HeaderMap) -> Self {
        ClientHeaders {
            forwarded: headers
                .get_all(http::header::FORWARDED)
                .iter()
                .map(|v| v.as_bytes())
                .collect(),
            x_forwarded_for: headers
                .get_all("x-forwarded-for")
                .iter()
                .map(|v| v.as_bytes())
                .collect(),
            user_agent: headers.get(http::header::USER_AGENT).map(|v| v.as_bytes()),
        }
    }
}

/// The `for=` hops of every `Forwarded` header, in order.
fn forwarded_hops(values: &[&[u8]]) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in values {
        let Ok(text) = std::str::from_utf8(value) else {
            hops.push(None);
            continue;
        };
        for element in text.split(',') {
            let hop = element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, v)| parse_hop(v));
            hops.push(hop);
        }
    }
    hops
}

fn x_forwarded_for_hops(values: &[&[u8]]) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in values {
        match std::str::from_utf8(value) {
            Ok(text) => hops.extend(text.split(',').map(parse_hop)),
            Err(_) => hops.push(None),
        }
    }
    hops
}

/// The client's IP address: the socket peer, or — when the peer is a trusted
/// proxy — the rightmost hop of the proxies' forwarding header
/// ([`TrustedProxies::header`]) that is not a trusted proxy. An unparseable
/// hop where the client should be yields `None` (unknown), never a guess
/// further left, which the client controls.
pub fn client_ip(
    peer: Option<IpAddr>,
    headers: &ClientHeaders<'_>,
    proxies: &TrustedProxies,
) -> Option<IpAddr> {
    let peer = canonical(peer?);
    if !proxies.contains(&peer) {
        return Some(peer);
    }
    let hops = match proxies.header {
        ProxyHeader::XForwardedFor => x_forwarded_for_hops(&headers.x_forwarded_for),
        ProxyHeader::Forwarded => forwarded_hops(&headers.forwarded),
    };
    for hop in hops.iter().rev() {
        match hop {
            Some(ip) if proxies.contains(ip) => continue,
            Some(ip) => return Some(*ip),
            None => return None,
        }
    }
    // Every hop was a trusted proxy (or there were none): the leftmost we trust.
    Some(hops.iter().flatten().next().copied().unwrap_or(peer))
}

/// What a session is bound to.
#[derive(Debug, Clone, Default)]
pub struct BindingConfig {
    /// Bind to the client IP address.
    pub ip: bool,
    /// Bind to the `User-Agent` header.
    pub user_agent: bool,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// Delete the original session when a request presents it from another client.
    pub destroy_on_mismatch: bool,
}

impl BindingConfig {
    /// Whether any binding is on.
    pub fn enabled(&self) -> bool {
        self.ip || self.user_agent
    }
}

/// The client facts a binding looks at, as taken from one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client IP address, if known.
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header, if any (bytes: it need not be UTF-8).
    pub user_agent: Option<Vec<u8>>,
}

impl ClientInfo {
    /// Reads the client facts from a request's peer address and headers.
    pub fn from_request(
        peer: Option<IpAddr>,
        headers: &ClientHeaders<'_>,
        config: &BindingConfig,
    ) -> Self {
        if config.ip && peer.is_none() {
            // Without the socket address every client looks the same and IP
            // binding protects nothing: say so once, loudly.
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    "bind_to_ip is on but the request has no peer address; IP binding cannot \
                     tell clients apart (axum: serve with into_make_service_with_connect_info::<SocketAddr>())"
                )
            });
        }
        ClientInfo {
            ip: if config.ip {
                client_ip(peer, headers, &config.trusted_proxies)
            } else {
                None
            },
            user_agent: if config.user_agent {
                headers.user_agent.map(<[u8]>::to_vec)
            } else {
                None
            },
        }
    }
}

/// HMAC-SHA256 over the bound facts, under `key`. Each field is length-prefixed
/// so no two different inputs share an encoding.
pub fn fingerprint(key: &[u8], info: &ClientInfo, config: &BindingConfig) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    let mut field = |tag: u8, bytes: &[u8]| {
        mac.update(&[tag]);
        mac.update(&(bytes.len() as u64).to_be_bytes());
        mac.update(bytes);
    };
    if config.ip {
        match info.ip {
            Some(IpAddr::V4(v4)) => field(4, &v4.octets()),
            Some(IpAddr::V6(v6)) => field(6, &v6.octets()),
            None => field(0, &[]),
        }
    }
    if config.user_agent {
        field(b'u', info.user_agent.as_deref().unwrap_or_default());
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_socket_address_wins_without_trusted_proxies() {
        let headers = h(&[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=2.2.2.2")]);
        assert_eq!(
            client_ip(
                Some(ip("9.9.9.9")),
                &ClientHeaders::from_header_map(&headers),
                &TrustedProxies::none()
            ),
            Some(ip("9.9.9.9"))
        );
    }

    #[test]
    fn forwarded_is_read_right_to_left_skipping_trusted_proxies() {
        let p = TrustedProxies::parse(["10.0.0.0/8", "fd00::/8"]).unwrap();
        let headers = h(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::1]:443\";proto=https, for=10.1.1.1",
        )]);
        assert_eq!(
            client_ip(
                Some(ip("10.0.0.1")),
                &ClientHeaders::from_header_map(&headers),
                &p.clone().header(ProxyHeader::Forwarded)
            ),
            Some(ip("2001:db8::1"))
        );
        let headers = h(&[("x-forwarded-for", "6.6.6.6, 7.7.7.7:8080, 10.2.2.2")]);
        assert_eq!(
            client_ip(
                Some(ip("::ffff:10.0.0.1")),
                &ClientHeaders::from_header_map(&headers),
                &p
            ),
            Some(ip("7.7.7.7"))
        );
    }

    #[test]
    fn only_the_header_the_proxies_write_is_believed() {
        // The proxy appended the real client (6.6.6.6) to the header it
        // writes and passed the client's own other header through.
        let forged = h(&[("forwarded", "for=1.2.3.4"), ("x-forwarded-for", "6.6.6.6")]);
        let forged = ClientHeaders::from_header_map(&forged);
        let p = TrustedProxies::parse(["10.0.0.1"]).unwrap();
        assert_eq!(p.proxy_header(), ProxyHeader::XForwardedFor);
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &forged, &p),
            Some(ip("6.6.6.6"))
        );
        let forged_xff = h(&[("forwarded", "for=6.6.6.6"), ("x-forwarded-for", "1.2.3.4")]);
        let forged_xff = ClientHeaders::from_header_map(&forged_xff);
        let p = p.header(ProxyHeader::Forwarded);
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &forged_xff, &p),
            Some(ip("6.6.6.6"))
        );
        // The proxies' header missing: the proxy is the client as far as
        // anyone can tell, never an address from the other header.
        let only_other = h(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            client_ip(
                Some(ip("10.0.0.1")),
                &ClientHeaders::from_header_map(&only_other),
                &p
            ),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn a_garbled_hop_where_the_client_should_be_is_unknown_not_a_guess() {
        let p = TrustedProxies::parse(["10.0.0.1"]).unwrap();
        for bad in [
            "6.6.6.6, unknown",
            "6.6.6.6, _hidden",
            "6.6.6.6, ",
            "6.6.6.6,\"[::1",
        ] {
            let headers = h(&[("x-forwarded-for", bad)]);
            assert_eq!(
                client_ip(
                    Some(ip("10.0.0.1")),
                    &ClientHeaders::from_header_map(&headers),
                    &p
                ),
                None,
                "{bad}"
            );
        }
    }

    /// A proxy written as an IPv4-mapped IPv6 address (as a dual-stack
    /// listener shows it) is trusted: it used to match no peer, and every
    /// user was bound to the proxy's address.
    #[test]
    fn a_proxy_given_as_an_ipv4_mapped_address_is_trusted() {
        let p = TrustedProxies::parse(["::ffff:10.0.0.5", "::ffff:192.168.0.0/112"]).unwrap();
        for peer in ["10.0.0.5", "::ffff:10.0.0.5", "192.168.3.4"] {
            assert!(p.contains(&ip(peer)), "{peer}");
        }
        assert!(!p.contains(&ip("10.0.0.6")));
        let headers = h(&[("x-forwarded-for", "6.6.6.6")]);
        assert_eq!(
            client_ip(
                Some(ip("::ffff:10.0.0.5")),
                &ClientHeaders::from_header_map(&headers),
                &p
            ),
            Some(ip("6.6.6.6"))
        );
    }

    #[test]
    fn hostile_proxy_lists_are_rejected() {
        assert!(TrustedProxies::parse(["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(["example.com"]).is_err());
        assert!(TrustedProxies::parse([""]).is_err());
    }

    #[test]
    fn fingerprints_differ_by_ip_user_agent_and_key() {
        let cfg = BindingConfig {
            ip: true,
            user_agent: true,
            ..Default::default()
        };
        let a = ClientInfo {
            ip: Some(ip("1.2.3.4")),
            user_agent: Some(b"UA".to_vec()),
        };
        let b = ClientInfo {
            ip: Some(ip("1.2.3.5")),
            ..a.clone()
        };
        let c = ClientInfo {
            user_agent: Some(b"UB".to_vec()),
            ..a.clone()
        };
        let fa = fingerprint(b"k1", &a, &cfg);
        assert_eq!(fa, fingerprint(b"k1", &a, &cfg));
        assert_ne!(fa, fingerprint(b"k1", &b, &cfg));
        assert_ne!(fa, fingerprint(b"k1", &c, &cfg));
        assert_ne!(fa, fingerprint(b"k2", &a, &cfg));
    }
}
