//! tailgate-loadtest: the load generator, the verifying sink and the one-command demo.
//!
//! ```text
//!  generate (traces, kinds, chunks) ─▶ drive (open loop, OTLP gRPC/HTTP) ─▶ target
//!  sink (OTLP backend, records per trace) ─▶ report (join, checks) ◀─ component counters
//!  demo: sink + 3 gateways + router in-process, driven and verified
//!  chaos: router + gateways as processes, DNS on loopback, scenarios, verified each
//! ```
//!
//! * [`generate`]: synthetic traces with marks the sink can check.
//! * [`drive`]: the open-loop driver.
//! * [`sink`]: the verifying backend.
//! * [`report`]: the joined report and its checks.
//! * [`demo`]: the local cluster.
//! * [`bench`](mod@bench): components as their own processes, measured by their own CPU accounting.
//! * [`chaos`]: a cluster of real processes that scales, rolls, crashes and loses its
//!   backend under load, each change verified.

pub mod bench;
pub mod chaos;
pub mod demo;
pub mod drive;
pub mod generate;
pub mod relay;
pub mod replay;
pub mod report;
pub mod sink;
