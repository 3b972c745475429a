//! What a process may hold in memory at most, by its configuration: the container-limit
//! formulas of docs/configuration.md as code. The router's and the gateway's configs add
//! their terms ([`crate::receive::limits::ReceiveConfig::memory_terms`] adds the
//! receivers'); `--check` prints the sum with each term, the binaries log it at start, and
//! the manifests' tests (loadtest/tests/k8s.rs) hold the shipped memory limits to it.

use std::fmt;

/// Bytes an HTTP/2 connection a hostile sender holds may keep outside every budget, at the
/// default `max_concurrent_streams` (32): its streams as they are decoded, answered and
/// replaced, and the buffers that churn grows, plus one frame read whole
/// ([`crate::serve::MAX_FRAME_SIZE`], 64 KiB). Measured (docs/benchmarks.md, "Session
/// 61"): 2,048 connections from eight addresses, each keeping 32 streams of 15 KB headers
/// open as fast as the server answered them, held 276 KB a connection beyond the in-flight
/// budget (218 KB with 100-byte headers); with the frame, 336 KiB. It was 80 KiB,
/// measured on connections holding their streams still, while streams waiting for a
/// worker were not yet charged: that flood took 2.5 GB against a 496 MiB bound. An
/// HTTP/1.1 connection reads at most 16 KiB ahead.
pub const CONNECTION_BYTES: u64 = 336 << 10;

/// One term of a bound: what it follows from (config keys), and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryTerm {
    /// What it is, named by the config keys it follows from.
    pub what: String,
    /// Its bytes.
    pub bytes: u64,
}

/// A memory bound: the sum of its terms, and what it assumed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryBound {
    /// The terms, in the order the formula names them.
    pub terms: Vec<MemoryTerm>,
    /// What the bound assumed or left out, printed after the total ("2 worker threads").
    pub context: Vec<String>,
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

    /// Adds what the bound assumed or left out.
    pub fn assume(&mut self, what: impl Into<String>) -> &mut Self {
        self.context.push(what.into());
        self
    }

    /// What `--check` prints (a line per term with `lines`) and the start logs (one line):
    /// `memory: up to about N MiB (assumptions; keep the container's memory limit above
    /// it: docs/configuration.md) ...`.
    pub fn note(mut self, lines: bool) -> String {
        self.assume("keep the container's memory limit above it: docs/configuration.md");
        if lines {
            format!("memory: {self:#}")
        } else {
            format!("memory: {self}")
        }
    }

    /// The sum of the terms.
    pub fn total(&self) -> u64 {
        self.terms
            .iter()
            .fold(0u64, |sum, t| sum.saturating_add(t.bytes))
    }
}

/// `n thread` or `n threads`.
pub fn threads_text(n: usize) -> String {
    if n == 1 {
        "1 worker thread".to_owned()
    } else {
        format!("{n} worker threads")
    }
}

/// The worker threads a binary's runtime starts: `explicit` (a `--threads` flag), else
/// `TOKIO_WORKER_THREADS` as tokio reads it, else one per core this process may use.
pub fn worker_threads(explicit: Option<usize>) -> usize {
    explicit
        .or_else(|| {
            std::env::var("TOKIO_WORKER_THREADS")
                .ok()
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .max(1)
}

/// Bytes as MiB, rounded up: a bound is never printed below itself.
fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

impl fmt::Display for MemoryBound {
    /// `up to about 1318 MiB (2 worker threads) = base (...): 64 MiB + ...` on one line
    /// (for logs); with `{:#}`, a line per term (for `--check`). The total is the terms'
    /// sum rounded up; each term is rounded up on its own, so with many small terms they
    /// may add up to a little more.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "up to about {} MiB", mib(self.total()))?;
        if !self.context.is_empty() {
            write!(f, " ({})", self.context.join("; "))?;
        }
        // Terms of nothing (no exporter beyond the first) are left out.
        for (i, t) in self.terms.iter().filter(|t| t.bytes > 0).enumerate() {
            let (bytes, what) = (mib(t.bytes), &t.what);
            if f.alternate() {
                let head = if i == 0 { ":" } else { "" };
                write!(f, "{head}\n  {bytes:>6} MiB  {what}")?;
            } else {
                let sep = if i == 0 { " =" } else { " +" };
                write!(f, "{sep} {what}: {bytes} MiB")?;
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
        assert_eq!(b.to_string(), "up to about 4 MiB = a: 3 MiB + b: 1 MiB");
        assert_eq!(
            format!("{b:#}"),
            "up to about 4 MiB:\n       3 MiB  a\n       1 MiB  b"
        );
        b.assume("2 worker threads").assume("x left out");
        assert_eq!(
            b.to_string(),
            "up to about 4 MiB (2 worker threads; x left out) = a: 3 MiB + b: 1 MiB"
        );
    }
}
