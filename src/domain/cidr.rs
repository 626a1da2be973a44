//! An IP network written as an address (`192.168.0.1`) or in CIDR notation
//! (`10.0.0.0/8`, `2001:db8::/32`): the entries of `login.trusted_proxies`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// A network; a bare address is the network of that one address (/32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(IpNet);

/// The text is neither an IP address nor an IP network in CIDR notation.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an IP address or CIDR")]
pub struct CidrError(String);

impl Cidr {
    /// Whether `ip` lies in this network. An IPv4 address never lies in an IPv6
    /// network, nor the other way round.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        text.parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map(Self)
            .map_err(|_| CidrError(text.to_owned()))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn a_network_contains_its_addresses_and_no_others() {
        let net = cidr("10.0.0.0/8");
        assert!(net.contains(ip("10.0.0.0")));
        assert!(net.contains(ip("10.255.255.255")));
        assert!(!net.contains(ip("11.0.0.0")));
        assert!(!net.contains(ip("9.255.255.255")));
        let net = cidr("2001:db8::/32");
        assert!(net.contains(ip("2001:db8:ffff::1")));
        assert!(!net.contains(ip("2001:db9::1")));
    }

    #[test]
    fn a_bare_address_is_a_network_of_one() {
        let one = cidr("192.168.0.1");
        assert!(one.contains(ip("192.168.0.1")));
        assert!(!one.contains(ip("192.168.0.2")));
        assert_eq!(one.to_string(), "192.168.0.1/32");
        let one = cidr("::1");
        assert!(one.contains(ip("::1")));
        assert!(!one.contains(ip("::2")));
        assert_eq!(one.to_string(), "::1/128");
    }

    #[test]
    fn host_bits_are_ignored_and_zero_prefixes_match_the_family() {
        assert!(cidr("10.1.2.3/8").contains(ip("10.9.9.9")));
        let any_v4 = cidr("0.0.0.0/0");
        assert!(any_v4.contains(ip("203.0.113.9")));
        assert!(!any_v4.contains(ip("::1")), "families never mix");
        assert!(!cidr("::/0").contains(ip("127.0.0.1")));
        assert!(
            !cidr("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")),
            "an IPv4-mapped address is an IPv6 address"
        );
    }

    #[test]
    fn anything_else_is_refused_naming_the_text() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "example.com",
            "10.0.0.0/",
            "/8",
            "10.0.0/8",
            "",
            "10.0.0.0/-1",
        ] {
            let err = bad.parse::<Cidr>().unwrap_err();
            assert!(err.to_string().contains(&format!("`{bad}`")), "{bad}: {err}");
        }
        assert_eq!(
            cidr(" 10.0.0.0/8 "),
            cidr("10.0.0.0/8"),
            "surrounding blanks are trimmed"
        );
    }
}
