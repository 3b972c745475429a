//! tailgate-core: what the Tailgate router and gateway share.
//!
//! ```text
//!  bytes on the wire ─▶ receive ─▶ SpanSink (router: split ▸ forward; gateway: buffer)
//!                         │
//!                         └─ wire::scan ─▶ ring (owner of each trace id) ─▶ wire::reframe
//! ```
//!
//! * [`receive`]: OTLP/gRPC and OTLP/HTTP receivers that hand raw request bytes on.
//! * [`wire`]: scan encoded requests, re-frame spans into new requests, raw gRPC codec.
//! * [`ring`]: the xxh3 consistent-hash ring over the gateways.
//! * [`members`]: where the gateways are: static lists and DNS discovery.
//! * [`credential`]: the header a client authenticates with (tokens, Basic), files re-read.
//! * [`request_auth`]: what an exporter's authenticator puts on each request
//!   (`headers_setter` rules, then a credential).
//! * [`sigv4`], [`aws`]: AWS Signature Version 4 (`sigv4auth`) and the AWS credentials
//!   chain it signs with; [`gcp`]: Google Cloud tokens (`googleclientauth`); [`fetched`]:
//!   how such fetched values are kept.
//! * [`oauth2`]: OAuth2 client-credentials tokens (`oauth2client`), fetched and kept.
//! * [`forward`]: a gRPC client that sends encoded requests to one member with retries.
//! * [`proxy`]: the HTTP proxy an exporter goes through (`proxy_url`, `HTTPS_PROXY`).
//! * [`serve`]: the accept loop and connection limits of every listener.
//! * [`retry`]: the one retry loop (back-off, server hints, time bound, holding).
//! * [`config`]: YAML loading with errors that name the file, line and key.
//! * [`collector`], [`pipelines`]: a whole Collector config read for a binary (its
//!   sections, and its pipelines as a graph joined by `forward` connectors).
//! * [`memory`]: the memory a config allows, term by term (what `--check` prints).
//! * [`telemetry`]: counters every component keeps, rendered for Prometheus.
//! * [`shutdown`]: SIGTERM and Ctrl-C handling for the binaries.

#[cfg(feature = "net")]
pub mod aws;
#[cfg(feature = "net")]
pub mod collector;
#[cfg(feature = "net")]
pub mod config;
#[cfg(feature = "net")]
pub mod credential;
#[cfg(feature = "net")]
pub mod endpoint;
#[cfg(feature = "net")]
pub mod fetched;
#[cfg(feature = "net")]
pub mod forward;
#[cfg(feature = "net")]
pub mod gcp;
#[cfg(feature = "net")]
pub mod members;
pub mod memory;
#[cfg(feature = "net")]
pub mod oauth2;
#[cfg(feature = "net")]
pub mod pipelines;
#[cfg(feature = "net")]
pub mod proxy;
pub mod receive;
#[cfg(feature = "net")]
pub mod request_auth;
#[cfg(feature = "net")]
pub mod retry;
#[cfg(feature = "net")]
pub mod rewarn;
pub mod ring;
#[cfg(feature = "net")]
pub mod serve;
#[cfg(feature = "net")]
pub mod shutdown;
#[cfg(feature = "net")]
pub mod sigv4;
#[cfg(feature = "net")]
pub mod telemetry;
#[cfg(any(all(test, feature = "net"), feature = "test-util"))]
pub mod test_util;
#[cfg(feature = "net")]
pub mod text;
#[cfg(feature = "net")]
pub mod tls;
pub mod wire;
