//! The SSRF guard: outgoing deliveries go only to public addresses unless the deployment allows
//! private ones (`--allow-private-targets`). The guard sits in the HTTP client's DNS resolver,
//! so the address checked is the address connected to (a name cannot resolve to a public
//! address for the check and a private one for the connection); IP literals, which skip the
//! resolver, are checked before sending. Redirects are never followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Whether an address is loopback, private, link-local or otherwise not on the public
/// Internet (including IPv4 embedded in IPv6).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_private_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || v6 == Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1)
        }
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

/// Why a target is refused.
pub fn refusal(host: &str) -> String {
    format!("{host} is a private, loopback or link-local address; outgoing deliveries go to public addresses only (allow private ones with --allow-private-targets)")
}

/// A target refused by the guard; the resolver's error, so a sender can tell it from a
/// network failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Checks a target URL without resolving it: http or https with a host and no credentials,
/// and (unless private targets are allowed) not an IP literal in a private range. Names are
/// checked when they are resolved ([`GuardedResolver`]).
pub fn check_url(url: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a valid URL ({e}): {url}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("only http and https URLs are allowed, got {}", parsed.scheme()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("URLs with credentials are not allowed".into());
    }
    let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("URL has no host: {url}"))?;
    let private_literal = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => is_private(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_private(IpAddr::V6(ip)),
        _ => false,
    };
    if private_literal && !allow_private {
        return Err(refusal(host));
    }
    Ok(parsed)
}

/// Checks a target URL when it is configured, so a bad one is the caller's error at once:
/// [`check_url`], and a name must resolve to at least one public address.
pub async fn check_target(url: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    let parsed = check_url(url, allow_private)?;
    if let (Some(url::Host::Domain(name)), false) = (parsed.host(), allow_private) {
        let port = parsed.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> =
            tokio::net::lookup_host((name, port)).await.map_err(|e| format!("cannot resolve {name}: {e}"))?.collect();
        if !addrs.iter().any(|a| !is_private(a.ip())) {
            return Err(refusal(name));
        }
    }
    Ok(parsed)
}

/// The HTTP client's resolver: drops private addresses (unless allowed) from every lookup.
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = addrs.into_iter().filter(|a| allow_private || !is_private(a.ip())).collect();
            if kept.is_empty() {
                return Err(Box::new(Refused(refusal(&host))) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_recognised() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn targets_are_checked_before_sending() {
        assert!(check_target("http://127.0.0.1:9/hook", false).await.unwrap_err().contains("--allow-private-targets"));
        assert!(check_target("http://[::1]/hook", false).await.is_err());
        assert!(check_target("http://localhost/hook", false).await.is_err(), "names resolving privately too");
        assert!(check_target("http://169.254.169.254/latest/meta-data", false).await.is_err());
        assert!(check_target("http://127.0.0.1:9/hook", true).await.is_ok());
        assert!(check_target("ftp://example.com/", true).await.unwrap_err().contains("http and https"));
        assert!(check_target("http://user:pw@example.com/", true).await.is_err());
        assert!(check_target("not a url", true).await.is_err());
        assert!(check_target("http://8.8.8.8/hook", false).await.is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_private_addresses() {
        use reqwest::dns::Resolve;
        let name = || "localhost".parse::<reqwest::dns::Name>().unwrap();
        let refused = GuardedResolver { allow_private: false }.resolve(name()).await.err().expect("refused");
        assert!(refused.downcast_ref::<Refused>().is_some(), "{refused}");
        assert!(GuardedResolver { allow_private: true }.resolve(name()).await.is_ok());
    }
}
