//! Where the gateways are. A member set comes from a static list or from DNS (the gateways'
//! Kubernetes headless Service); either way it is a stream of full sets, and consumers
//! build a new [`crate::ring::Ring`] from each set that differs from the last.

pub mod dns;

pub use crate::ring::normalise;
pub use dns::{DiscoveryStats, DnsConfig, DnsDiscovery};

/// The port a static member written without one is dialled on: OTLP/gRPC's, as the
/// Collector's `loadbalancing` exporter assumes for its static hostnames.
pub const DEFAULT_MEMBER_PORT: u16 = 4317;

/// Reads a static member list (`members.static`, `peers.static`), giving an entry
/// written without a port (`gateway-1`, `10.0.0.7`, `[::1]`) [`DEFAULT_MEMBER_PORT`], so
/// that routers and gateways place the same `host:port` on their rings.
pub fn deserialize_static<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    // A list, or one string split at its commas as the Collector's decoder splits it
    // (`hostnames: ${env:GATEWAYS}` with `gw-a:4317,gw-b:4317`, an adoption trial),
    // each entry trimmed: an address has no spaces.
    let list = crate::config::comma_list(d)?;
    Ok(list
        .into_iter()
        .map(|m| with_default_port(m.trim().to_owned()))
        .collect())
}

/// Why a static member (`host:port`, as [`deserialize_static`] leaves it) cannot be
/// dialled, if it cannot: a port that is no port number, or a host that is neither an IP
/// address (IPv6 in brackets) nor a DNS name (`gw:4317:9`, `a b:4317` were taken, and
/// failed every connection).
pub fn member_problem(member: &str) -> Option<&'static str> {
    let Some((host, port)) = member.rsplit_once(':') else {
        return Some("is not host:port");
    };
    if !port.parse::<u16>().is_ok_and(|p| p != 0) {
        return Some("is not host:port: its port is not a port number (1-65535)");
    }
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        // A zone (`fe80::1%eth0`) names the interface of a link-local address.
        Some(v6) => v6
            .split_once('%')
            .map_or(v6, |(addr, _)| addr)
            .parse::<std::net::Ipv6Addr>()
            .is_ok(),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        }
    };
    (!host_ok).then_some(
        "is not host:port: its host is not an IP address or a DNS name (an IPv6 address goes in brackets: [::1]:4317)",
    )
}

fn with_default_port(member: String) -> String {
    let bracketed = member.starts_with('[') && member.ends_with(']');
    if bracketed || (!member.is_empty() && !member.contains(':')) {
        format!("{member}:{DEFAULT_MEMBER_PORT}")
    } else {
        member
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: a static list written as one string, as `${env:GATEWAYS}` gives it.
    /// Guarantees: split at its commas and trimmed, each entry given the default port
    /// when it has none; null and an empty string are no members.
    #[test]
    fn a_static_list_may_be_one_string_of_commas() {
        #[derive(serde::Deserialize)]
        struct Members {
            #[serde(default, deserialize_with = "deserialize_static")]
            r#static: Vec<String>,
        }
        let read = |yaml: &str| serde_yaml_ng::from_str::<Members>(yaml).unwrap().r#static;
        assert_eq!(
            read("static: 'gw-a:4400,gw-b, 10.0.0.7'"),
            ["gw-a:4400", "gw-b:4317", "10.0.0.7:4317"]
        );
        assert_eq!(read("static: [gw-a]"), ["gw-a:4317"]);
        assert!(read("static: ~").is_empty());
        assert!(read("static: ''").is_empty());
    }

    /// Scenario: static members as written, good and bad.
    /// Guarantees: names, IPv4 and bracketed IPv6 with a port are taken; a second port,
    /// a space, a bare IPv6 address or a port out of range is refused.
    #[test]
    fn members_must_be_host_and_port() {
        for good in [
            "gw-1.tailgate.svc:4317",
            "10.0.0.7:4317",
            "[::1]:4317",
            "[fe80::1%eth0]:4317",
            "gw_2:1",
        ] {
            assert_eq!(member_problem(good), None, "{good}");
        }
        for bad in [
            "gw:4317:9",
            "a b:4317",
            "::1",
            ":4317",
            "gw:0",
            "gw:70000",
            "gw:x",
            "[nope]:4317",
        ] {
            assert!(member_problem(bad).is_some(), "{bad}");
        }
    }

    /// Scenario: static members written with and without ports, IPv4, IPv6 and names.
    /// Guarantees: one without a port gets 4317; one with a port keeps it.
    #[test]
    fn a_member_without_a_port_gets_otlp_grpc_s() {
        for (written, read) in [
            ("gateway-1", "gateway-1:4317"),
            ("10.0.0.7", "10.0.0.7:4317"),
            ("[::1]", "[::1]:4317"),
            ("gateway-1:4400", "gateway-1:4400"),
            ("[::1]:4400", "[::1]:4400"),
            ("", ""),
        ] {
            assert_eq!(with_default_port(written.to_owned()), read, "{written}");
        }
    }
}
