//! What a process may hold in memory at most, by its configuration: the container-limit
//! formulas of docs/configuration.md as code. The router's and the gateway's configs add
//! their terms ([`crate::receive::limits::ReceiveConfig::memory_terms`] adds the
//! receivers'); `--check` prints the sum with each term, the binaries log it at start, and
//! the manifests' tests (loadtest/tests/k8s.rs) hold the shipped memory limits to it.

use std::fmt;

/// Bytes an HTTP/2 connection a hostile sender holds may keep outside every budget: up to
/// `max_concurrent_streams` streams' headers and the buffers a burst of them grew
/// (measured 62 KB a connection on the gRPC port, 76 KB on the HTTP port; an HTTP/1.1
/// connection reads at most 16 KiB ahead).
pub const CONNECTION_BYTES: u64 = 80 << 10;

/// One term of a bound: what it follows from (config keys), and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryTerm {
    /// What it is, named by the config keys it follows from.
    pub what: String,
    /// Its bytes.
    pub bytes: u64,
}

/// A memory bound: the sum of its terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryBound {
    /// The terms, in the order the formula names them.
    pub terms: Vec<MemoryTerm>,
}

// === impl MemoryBound ===

impl MemoryBound {
    /// Adds a term.
    pub fn add(&mut self, what: impl Into<String>, bytes: u64) -> &mut Self {
        self.terms.push(MemoryTerm {
            what: what.into(),
            bytes,
        });
        self
    }

    /// The sum of the terms.
    pub fn total(&self) -> u64 {
        self.terms
            .iter()
            .fold(0u64, |sum, t| sum.saturating_add(t.bytes))
    }
}

/// Bytes as MiB, rounded up: a bound is never printed below itself.
fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

impl fmt::Display for MemoryBound {
    /// `up to about 1318 MiB = 64 MiB base (...) + 1127 MiB buffer.max_buffered_bytes × 1.1
    /// + ...` on one line (for logs); with `{:#}`, a line per term (for `--check`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "up to about {} MiB", mib(self.total()))?;
        // Terms of nothing (no exporter beyond the first) are left out.
        for (i, t) in self.terms.iter().filter(|t| t.bytes > 0).enumerate() {
            let (bytes, what) = (mib(t.bytes), &t.what);
            if f.alternate() {
                write!(f, "\n  {bytes:>6} MiB  {what}")?;
            } else {
                let sep = if i == 0 { " =" } else { " +" };
                write!(f, "{sep} {bytes} MiB {what}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: a bound of three terms, one under a MiB, one of nothing.
    /// Guarantees: the total is their sum; each term and the total print rounded up, so
    /// the printed bound is never below the real one; a term of nothing is not printed.
    #[test]
    fn terms_add_up_and_print_rounded_up() {
        let mut b = MemoryBound::default();
        b.add("a", 3 << 20).add("nothing", 0).add("b", 1);
        assert_eq!(b.total(), (3 << 20) + 1);
        assert_eq!(b.to_string(), "up to about 4 MiB = 3 MiB a + 1 MiB b");
        assert_eq!(
            format!("{b:#}"),
            "up to about 4 MiB\n       3 MiB  a\n       1 MiB  b"
        );
    }
}
