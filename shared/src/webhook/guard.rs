//! The SSRF guard: which URLs a webhook may call and which addresses it may connect to.
//!
//! A URL is checked twice. At intake its scheme, form and any literal address are checked, so a
//! job that could never be delivered is refused before it is accepted. At delivery the address
//! actually connected to is checked after DNS resolution, inside the connector: a name that
//! resolves to a refused address (or resolves differently than it did before) never gets a
//! connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::Uri;
use ipnet::IpNet;

use crate::processor::Rejection;

/// Longest accepted URL.
const MAX_URL_BYTES: usize = 2048;

/// The exceptions an operator opened (`SPILLWAY_WEBHOOK_ALLOW`): networks and host names that
/// webhooks may reach although they are private, loopback or otherwise refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    networks: Vec<IpNet>,
    hosts: Vec<String>,
}

/// A URL that passed the first check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL, parsed.
    pub uri: Uri,
    /// The host, lowercase, without the brackets of an IPv6 literal.
    pub host: String,
    /// The host's address when the URL names one literally.
    pub literal: Option<IpAddr>,
}

impl Allowlist {
    /// Parses a comma-separated list of CIDRs (`10.1.0.0/16`, `fd00::/8`), single addresses and
    /// host names.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut allow = Self::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Some(network) = parse_network(entry)? {
                allow.networks.push(network);
            } else if is_host_name(entry) {
                allow.hosts.push(entry.to_ascii_lowercase());
            } else {
                return Err(format!(
                    "`{entry}` is neither a CIDR, an address nor a host name"
                ));
            }
        }
        Ok(allow)
    }

    /// Whether nothing is allowed beyond the public internet.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty() && self.hosts.is_empty()
    }

    /// Checks a URL's length and form and, when it names an address, that address.
    pub fn check_url(&self, url: &str) -> Result<Target, Rejection> {
        if url.len() > MAX_URL_BYTES {
            return Err(Rejection::Invalid(format!(
                "the URL is longer than {MAX_URL_BYTES} bytes"
            )));
        }
        let scheme = url.split_once(':').map(|(scheme, _)| scheme);
        match scheme {
            Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {}
            Some(s)
                if !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
            {
                return Err(Rejection::Forbidden(format!(
                    "the `{}` scheme is not allowed; use http or https",
                    s.to_ascii_lowercase()
                )));
            }
            _ => {
                return Err(Rejection::Invalid(format!(
                    "`{}` is not an absolute http or https URL",
                    shorten(url)
                )));
            }
        }
        let uri: Uri = url
            .parse()
            .map_err(|e| Rejection::Invalid(format!("`{}` is not a URL: {e}", shorten(url))))?;
        let authority = uri
            .authority()
            .ok_or_else(|| Rejection::Invalid(format!("`{}` has no host", shorten(url))))?;
        if authority.as_str().contains('@') {
            return Err(Rejection::Invalid(
                "a webhook URL may not carry credentials; send them in a header".to_owned(),
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err(Rejection::Invalid(format!(
                "`{}` has no host",
                shorten(url)
            )));
        }
        let literal = host.parse::<IpAddr>().ok();
        if let Some(address) = literal {
            self.check_address(&host, address)?;
        } else if is_numeric_host(&host) {
            // `2130706433`, `0177.0.0.1`, `127.1`, `0x7f.1`: names no DNS resolves, which the
            // system's resolver reads as IPv4 addresses (loopback, here). Refused now rather than
            // accepted and failed at delivery.
            return Err(Rejection::Forbidden(format!(
                "`{}` is an address in a numeric form other than dotted decimal; write it as \
                 a.b.c.d",
                shorten(&host)
            )));
        } else if !is_host_name(&host) {
            return Err(Rejection::Invalid(format!("`{host}` is not a host name")));
        } else if !self.allows_host(&host) && is_local_name(&host) {
            return Err(Rejection::Forbidden(format!(
                "`{host}` names this machine or its private network"
            )));
        }
        Ok(Target { uri, host, literal })
    }

    /// Checks an address a webhook for `host` is about to connect to.
    pub fn check_address(&self, host: &str, address: IpAddr) -> Result<(), Rejection> {
        if self.allows_host(host) || self.networks.iter().any(|n| holds(n, address)) {
            return Ok(());
        }
        match refused_range(address) {
            None => Ok(()),
            Some(range) => Err(Rejection::Forbidden(format!(
                "{address} is a {range} address; webhooks may only reach public addresses \
                 unless SPILLWAY_WEBHOOK_ALLOW lists it"
            ))),
        }
    }

    fn allows_host(&self, host: &str) -> bool {
        self.hosts.iter().any(|allowed| allowed == host)
    }
}

/// Why an address is refused, or `None` for a public one.
fn refused_range(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => {
            // An IPv4-mapped address (::ffff:127.0.0.1) is judged as the IPv4 address it maps.
            // The deprecated IPv4-compatible form (::127.0.0.1) is refused whole, public or not,
            // as special-purpose (`refused_v6`).
            if let Some(v4) = v6.to_ipv4_mapped() {
                return refused_v4(v4);
            }
            refused_v6(v6)
        }
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() || a >= 240 {
        Some("reserved")
    } else if ip.is_documentation()
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (18..20).contains(&b))
    {
        Some("special-purpose")
    } else {
        None
    }
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique-local")
    } else if first & 0xffc0 == 0xfec0 {
        Some("site-local")
    } else if ip.segments()[..6] == [0, 0, 0, 0, 0, 0]
        || first == 0x2001 && ip.segments()[1] == 0xdb8
    {
        // ::a.b.c.d (IPv4-compatible, deprecated) and the documentation prefix.
        Some("special-purpose")
    } else if first == 0x64 && ip.segments()[1] == 0xff9b {
        // NAT64 would translate to any IPv4 address, private ones included.
        Some("NAT64")
    } else if first == 0x2002 {
        // 6to4 embeds an IPv4 address the same way.
        Some("6to4")
    } else {
        None
    }
}

/// Names that resolve to this machine or its private network everywhere, refused without asking
/// DNS. Any other name is judged by the addresses it resolves to.
fn is_local_name(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    host == "localhost"
        || host.ends_with(".localhost")
        || host.ends_with(".local")
        || host.ends_with(".internal")
}

/// A DNS name: labels of letters, digits, `-` and `_`, separated by dots.
fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Whether `host` is made only of numeric labels (decimal, octal with a leading 0, or hex with
/// `0x`), which `inet_aton` and so the system's resolver read as an IPv4 address.
fn is_numeric_host(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    labels.iter().any(|label| !label.is_empty())
        && labels.iter().all(|label| {
            let hex = label
                .strip_prefix("0x")
                .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_hexdigit()));
            label.is_empty() || hex || label.bytes().all(|b| b.is_ascii_digit())
        })
}

fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        text.chars().take(MAX).chain("…".chars()).collect()
    }
}

/// The network `text` names: a CIDR (`10.1.0.0/16`, `fd00::/8`) or a single address. `Ok(None)`
/// when `text` is no address at all (so perhaps a host name).
fn parse_network(text: &str) -> Result<Option<IpNet>, String> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let Ok(address) = address
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return match prefix {
            Some(_) => Err(format!("`{text}` is not a CIDR")),
            None => Ok(None),
        };
    };
    let Some(prefix) = prefix else {
        return Ok(Some(IpNet::from(address)));
    };
    let max = if address.is_ipv4() { 32 } else { 128 };
    prefix
        .parse::<u8>()
        .ok()
        .and_then(|prefix| IpNet::new(address, prefix).ok())
        .map(Some)
        .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {max}"))
}

/// Whether `network` holds `address`; an IPv4 network also holds the IPv4-mapped IPv6 form of
/// its addresses (`::ffff:10.0.0.1`).
fn holds(network: &IpNet, address: IpAddr) -> bool {
    match (network, address) {
        (IpNet::V4(network), IpAddr::V6(address)) => address
            .to_ipv4_mapped()
            .is_some_and(|v4| network.contains(&v4)),
        _ => network.contains(&address),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> Rejection {
        Allowlist::default()
            .check_url(url)
            .expect_err(&format!("{url} was allowed"))
    }

    #[test]
    fn public_http_and_https_urls_pass() {
        let allow = Allowlist::default();
        for url in [
            "https://hooks.example.com/in?x=1",
            "http://example.com:8080/",
            "https://93.184.216.34/hook",
            "https://[2606:2800:220:1:248:1893:25c8:1946]/",
        ] {
            let target = allow.check_url(url).unwrap();
            assert_eq!(target.uri.to_string(), url);
        }
    }

    #[test]
    fn the_issues_examples_are_refused_as_forbidden() {
        for url in [
            "http://127.0.0.1",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]",
            "http://10.0.0.1",
            "file:///etc/passwd",
            "gopher://example.com/",
            "http://localhost:8080/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::127.0.0.1]/",
            "http://[::8.8.8.8]/",
            "http://[fd00:ec2::254]/",
            "http://0.0.0.0/",
            "http://192.168.1.1/",
            "http://172.16.5.4/",
            "http://100.64.0.1/",
            "http://224.0.0.1/",
            "http://[fe80::1]/",
            "http://[ff02::1]/",
            "http://metadata.google.internal/",
        ] {
            assert!(
                matches!(refused(url), Rejection::Forbidden(_)),
                "{url}: {:?}",
                refused(url)
            );
        }
    }

    #[test]
    fn numeric_host_forms_other_than_dotted_decimal_are_refused_at_once() {
        for url in [
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://0x7f.1/",
            "http://0x7f000001/",
            "http://127.0.0.1./",
            "http://017700000001/",
            "http://8.8.8.010/",
        ] {
            assert!(
                matches!(refused(url), Rejection::Forbidden(ref why) if why.contains("numeric form")),
                "{url}: {:?}",
                refused(url)
            );
        }
        // Names with digits are names.
        let allow = Allowlist::default();
        for url in [
            "https://1password.com/",
            "https://123.example.com/",
            "http://0x.example/",
        ] {
            assert!(allow.check_url(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn malformed_urls_are_invalid() {
        for url in [
            "",
            "example.com/hook",
            "https://",
            "https:///path",
            "https://user:pw@example.com/",
            "https://exa mple.com/",
        ] {
            assert!(
                matches!(refused(url), Rejection::Invalid(_)),
                "{url}: {:?}",
                refused(url)
            );
        }
    }

    #[test]
    fn the_allowlist_opens_networks_and_hosts() {
        let allow =
            Allowlist::parse("127.0.0.1/32, 10.1.0.0/16 ,receiver.internal,fd00::/8").unwrap();
        assert!(allow.check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(allow.check_url("http://127.0.0.2/").is_err());
        assert!(allow.check_url("http://10.1.200.3/").is_ok());
        assert!(allow.check_url("http://10.2.0.1/").is_err());
        assert!(allow.check_url("http://receiver.internal/").is_ok());
        assert!(allow.check_url("http://[fd00:ec2::254]/").is_ok());
        assert!(allow.check_url("http://[::ffff:127.0.0.1]/").is_ok());
        assert!(
            allow
                .check_address("receiver.internal", "10.9.9.9".parse().unwrap())
                .is_ok()
        );
        assert!(
            allow
                .check_address("other.example", "10.9.9.9".parse().unwrap())
                .is_err()
        );
        let single = Allowlist::parse("192.168.1.9").unwrap();
        assert!(single.check_url("http://192.168.1.9/").is_ok());
        assert!(single.check_url("http://192.168.1.8/").is_err());
        let everything = Allowlist::parse("0.0.0.0/0").unwrap();
        assert!(everything.check_url("http://169.254.169.254/").is_ok());
        assert!(everything.check_url("http://[fd00::1]/").is_err());
    }

    #[test]
    fn bad_allowlist_entries_are_named() {
        for list in ["10.0.0.0/33", "not a host", "::1/129", "1.2.3/8"] {
            let error = Allowlist::parse(list).unwrap_err();
            assert!(error.contains('`'), "{list}: {error}");
        }
        assert!(Allowlist::parse(" , ").unwrap().is_empty());
    }

    #[test]
    fn resolved_addresses_are_judged_like_literals() {
        let allow = Allowlist::default();
        for address in [
            "127.0.0.1",
            "10.0.0.1",
            "169.254.169.254",
            "::1",
            "fc00::1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(
                allow
                    .check_address("example.com", address.parse().unwrap())
                    .is_err(),
                "{address}"
            );
        }
        for address in [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "8.8.8.8",
        ] {
            assert!(
                allow
                    .check_address("example.com", address.parse().unwrap())
                    .is_ok(),
                "{address}"
            );
        }
    }
}
