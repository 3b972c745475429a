//! Where the gateways are. A member set comes from a static list or from DNS (the gateways'
//! Kubernetes headless Service); either way it is a stream of full sets, and consumers
//! build a new [`crate::ring::Ring`] from each set that differs from the last.

pub mod dns;

pub use crate::ring::normalise;
pub use dns::{DiscoveryStats, DnsConfig, DnsDiscovery};
