//! IP networks and addresses as Go's `net` package reads and compares them, for
//! `IsInCIDR`: checked at load (`parse`) and tested at evaluation (`eval`). A leaf.

/// An IP network as Go's `net.ParseCIDR` reads it and `IPNet.Contains` tests it: IPv4 as
/// four bytes, and an IPv6 network that is IPv4-mapped once masked
/// (`::ffff:10.0.0.0/104`) as the IPv4 network it maps (prefix less 96), so that it holds
/// IPv4 addresses, as in Go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    net: Vec<u8>,
    prefix: u32,
}

impl Cidr {
    /// `addr/prefix`, or `None` when it is not one.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = text.split_once('/')?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix: u32 = prefix.parse().ok()?;
        match addr.parse::<std::net::IpAddr>().ok()? {
            std::net::IpAddr::V4(v4) => (prefix <= 32).then(|| Cidr {
                net: v4.octets().to_vec(),
                prefix,
            }),
            // Go masks first: only a network still IPv4-mapped once masked (a prefix of
            // 96 or more) holds IPv4 addresses; `::ffff:0:0/64` is an IPv6 network.
            std::net::IpAddr::V6(v6) if prefix <= 128 => {
                let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                let masked = std::net::Ipv6Addr::from(u128::from(v6) & mask);
                Some(match masked.to_ipv4_mapped() {
                    Some(v4) => Cidr {
                        net: v4.octets().to_vec(),
                        prefix: prefix - 96,
                    },
                    None => Cidr {
                        net: masked.octets().to_vec(),
                        prefix,
                    },
                })
            }
            std::net::IpAddr::V6(_) => None,
        }
    }

    /// Whether `ip` (four or sixteen bytes, IPv4-mapped addresses as four) is in it.
    pub fn contains(&self, ip: &[u8]) -> bool {
        if ip.len() != self.net.len() {
            return false;
        }
        let whole = (self.prefix / 8) as usize;
        let rest = self.prefix % 8;
        ip[..whole] == self.net[..whole]
            && (rest == 0 || (ip[whole] ^ self.net[whole]) >> (8 - rest) == 0)
    }
}

/// An address as Go's `net.ParseIP` reads it, IPv4-mapped IPv6 as IPv4.
pub fn ip_bytes(text: &str) -> Option<Vec<u8>> {
    Some(match text.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets().to_vec(),
        },
    })
}
