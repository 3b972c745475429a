//! Where the gateways are. A member set comes from a static list or from DNS (the gateways'
//! Kubernetes headless Service); either way it is a stream of full sets, and consumers
//! build a new [`crate::ring::Ring`] from each set that differs from the last.

pub mod dns;

pub use dns::{DiscoveryStats, DnsConfig, DnsDiscovery};

use crate::ring::Member;

/// Normalises a member list: sorted, without duplicates, so two nodes that discover the
/// same gateways in a different order agree.
pub fn normalise(mut members: Vec<Member>) -> Vec<Member> {
    members.sort();
    members.dedup();
    members
}
