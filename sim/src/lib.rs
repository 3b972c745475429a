//! `tailgate-sim`: Tailgate at internet scale, simulated on one core. Routers, gateways,
//! the backend and the headless Service's DNS run on a virtual clock, with the project's
//! real pieces: the xxh3 ring ([`tailgate_core::ring`]), the policy plan a user runs
//! ([`tailgate_gateway::PolicyPlan`], decisions `decision_wait` after a trace's first span),
//! the gateway's buffer and exporter limits and retry bounds (their config types and
//! defaults), the exporter's batching rule ([`tailgate_gateway::export::BatchConfig`]), and
//! the redistribution rule ([`tailgate_gateway::peers::owner_rule`]: the trace follows its
//! owner on the gateways' ring; without redistribution, it is decided in parts).
//!
//! Two models run together ([`engine`]): flows for load ([`fluid`]: CPU, memory and
//! refusals per gateway and step from the [`cost`] model) and a sample of traces followed
//! span by span ([`traces`]: what each span came to, whether kept traces are whole, the
//! policies' kept shares). Scenarios ([`scenario`]) name a workload ([`workload`]) and
//! events; [`plan`] answers sizing questions; [`report`] writes the HTML page; [`validate`]
//! compares the sim with the real cluster.

pub mod calibrate;
pub mod cluster;
pub mod cost;
pub mod engine;
pub mod fluid;
pub mod plan;
pub mod report;
pub mod scenario;
pub mod traces;
pub mod validate;
pub mod workload;
