//! Fuzzes what a client sends beside the session cookie's value: the
//! session cookie lookup over `Cookie` headers, and client binding's
//! parsing of `Forwarded` / `X-Forwarded-For` behind a trusted proxy (each
//! read only when it is the one the proxies write) and of
//! a trusted-proxy list. None of them may panic; a cookie value found is
//! visible ASCII taken from a header, and a client IPv4 address found is the
//! peer or one a header names (an IPv6 one may be written in another form).

#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use sessionkit::binding::{client_ip, ClientHeaders, ProxyHeader, TrustedProxies};
use sessionkit::http::{find_cookie_in, CookieLookup};

fuzz_target!(|input: &[u8]| {
    // 0xFF never occurs in a header: it splits the input into headers.
    let headers: Vec<&[u8]> = input.split(|&b| b == 0xFF).collect();
    if let CookieLookup::Found(v) = find_cookie_in(headers.iter().copied(), "sid") {
        assert!(v.bytes().all(|b| (0x21..0x7f).contains(&b)), "{v:?}");
        assert!(
            v.is_empty()
                || headers
                    .iter()
                    .any(|h| h.windows(v.len()).any(|w| w == v.as_bytes())),
            "{v:?} is in no header"
        );
    }

    let peer: IpAddr = "10.0.0.1".parse().expect("an address");
    let (forwarded, xff) = headers.split_at(headers.len() / 2);
    let client = ClientHeaders {
        forwarded: forwarded.to_vec(),
        x_forwarded_for: xff.to_vec(),
        user_agent: None,
    };
    for (header, read) in [
        (ProxyHeader::XForwardedFor, xff),
        (ProxyHeader::Forwarded, forwarded),
    ] {
        let proxies = TrustedProxies::parse(["10.0.0.0/8"])
            .expect("a valid list")
            .header(header);
        if let Some(ip @ IpAddr::V4(_)) = client_ip(Some(peer), &client, &proxies) {
            // Only the header the proxies write may name the client.
            let said: String = read
                .iter()
                .map(|h| String::from_utf8_lossy(h).into_owned())
                .collect();
            assert!(
                ip == peer || said.contains(&ip.to_string()),
                "{ip} is not in the {header:?} header"
            );
        }
    }

    if let Ok(text) = std::str::from_utf8(input) {
        let _ = TrustedProxies::parse(text.split('\n'));
    }
});
