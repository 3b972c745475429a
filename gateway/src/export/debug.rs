//! The `debug` exporter (`export.debug[/name]`): writes each request it would send as one
//! line of OTLP JSON, to stdout or appended to a file. The lines are what
//! `tailgate-gateway explain --traces` reads, so a day of kept traces can be replayed
//! against a changed policy file.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::keys::NotApplied;

/// `export.debug[/name]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct DebugConfig {
    /// File to append to; stdout when absent.
    #[serde(default)]
    pub path: Option<String>,
    /// How kept spans are gathered into lines.
    #[serde(default)]
    pub batch: super::batch::BatchConfig,
    /// Span bytes queued for this exporter before kept spans wait in the buffer (parked). Default 64 MiB.
    #[serde(default = "super::batch::default_queue_bytes")]
    pub queue_bytes: u64,
    /// The Collector's `debug` exporter keys, accepted so that a copied block loads and
    /// not applied (warned at start): `verbosity` (Tailgate writes whole OTLP JSON
    /// requests), `sampling_initial`, `sampling_thereafter` (every kept request is
    /// written), `use_internal_logger`.
    #[serde(default)]
    pub verbosity: Option<NotApplied>,
    /// See `verbosity`.
    #[serde(default)]
    pub sampling_initial: Option<NotApplied>,
    /// See `verbosity`.
    #[serde(default)]
    pub sampling_thereafter: Option<NotApplied>,
    /// See `verbosity`.
    #[serde(default)]
    pub use_internal_logger: Option<NotApplied>,
}

impl DebugConfig {
    /// The Collector keys set in this block that are accepted and not applied.
    pub fn not_applied(&self) -> Vec<&'static str> {
        super::keys::set_keys([
            ("verbosity", &self.verbosity),
            ("sampling_initial", &self.sampling_initial),
            ("sampling_thereafter", &self.sampling_thereafter),
            ("use_internal_logger", &self.use_internal_logger),
        ])
    }

    /// Opens the output. Must be called inside a Tokio runtime.
    pub fn writer(&self) -> std::io::Result<DebugWriter> {
        let out = match &self.path {
            None => Output::Stdout,
            Some(p) => Output::File(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        Ok(DebugWriter {
            out: Arc::new(Mutex::new(out)),
        })
    }
}

/// What a line is written through: the output sees it in pieces of this size.
const LINE_BUFFER: usize = 64 << 10;

/// A `debug` exporter's output.
enum Output {
    /// Standard output, locked for each whole line (other writers to it wait).
    Stdout,
    /// A file opened to append. Lines of more than [`LINE_BUFFER`] bytes go out in several
    /// writes, so two exporters (or processes) appending to one file could interleave
    /// them: give each its own path.
    File(std::fs::File),
}

/// Where `debug` lines go. Writes happen on Tokio's blocking pool, one at a time (the
/// exporter task awaits each), so the lock is never contended.
pub struct DebugWriter {
    out: Arc<Mutex<Output>>,
}

/// Why a kept request could not be written to the debug output.
#[derive(Debug, thiserror::Error)]
pub enum DebugWriteError {
    /// The request is not valid OTLP (never for spans the gateway accepted).
    #[error(transparent)]
    Json(#[from] tailgate_core::receive::http::JsonError),
    /// Writing failed (disk full, closed pipe).
    #[error("{0}")]
    Io(std::io::Error),
    /// A writer panicked while holding the output.
    #[error("debug output poisoned by a panic")]
    Poisoned,
}

impl DebugWriter {
    /// Writes one encoded request as a JSON line, streamed to the output as it is made
    /// ([`tailgate_core::receive::otlp_json_out`]): the line is never held whole, so a
    /// request whose JSON is many times its size (empty events, deep values) costs the
    /// gateway only the writer's buffer. The request is read through once first, so that a
    /// malformed one (never a request the gateway made) writes no half line.
    pub async fn write(&mut self, body: bytes::Bytes) -> Result<(), DebugWriteError> {
        use tailgate_core::receive::otlp_json_out::write_json;
        let out = self.out.clone();
        tokio::task::spawn_blocking(move || {
            write_json(&body, &mut std::io::sink())?;
            let mut out = out.lock().map_err(|_| DebugWriteError::Poisoned)?;
            match &mut *out {
                Output::Stdout => write_line(&mut std::io::stdout().lock(), &body),
                Output::File(f) => write_line(f, &body),
            }
        })
        .await
        .map_err(|_| DebugWriteError::Poisoned)?
    }
}

/// Writes `body` to `out` as one JSON line through a [`LINE_BUFFER`]-byte buffer. When
/// writing fails part way, what is still buffered is dropped and a newline is tried, so
/// that the next line does not start on the broken one.
fn write_line(out: &mut impl Write, body: &[u8]) -> Result<(), DebugWriteError> {
    use tailgate_core::receive::otlp_json_out::{write_json, JsonWriteError};
    let mut line = std::io::BufWriter::with_capacity(LINE_BUFFER, &mut *out);
    let written = match write_json(body, &mut line) {
        Ok(()) => line.write_all(b"\n").and_then(|()| line.flush()),
        Err(JsonWriteError::Io(e)) => Err(e),
        Err(e) => return Err(e.into()),
    };
    match written {
        Ok(()) => {
            drop(line);
            out.flush().map_err(DebugWriteError::Io)
        }
        Err(e) => {
            let (out, _unwritten) = line.into_parts();
            // Best effort: the output is failing already.
            out.write_all(b"\n").ok();
            Err(DebugWriteError::Io(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    /// An output that takes `room` bytes, then fails once, then takes everything.
    struct Failing {
        written: Vec<u8>,
        room: usize,
        failed: bool,
    }

    impl Write for Failing {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if !self.failed && self.written.len() + b.len() > self.room {
                self.failed = true;
                return Err(std::io::Error::other("disk full"));
            }
            self.written.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Scenario: a line of more than the line buffer whose writing fails part way (the
    /// first 64 KiB went out), then a good line.
    /// Guarantees: the error is an I/O error; the broken line is ended, so the next line
    /// starts on a line of its own and reads as OTLP/JSON.
    #[test]
    fn a_line_that_fails_part_way_does_not_swallow_the_next() {
        let big = tailgate_core::test_util::FakeOtlp::traces(400)
            .spans(4)
            .build()
            .encode_to_vec();
        let small = tailgate_core::test_util::FakeOtlp::traces(1)
            .spans(1)
            .build()
            .encode_to_vec();
        let mut out = Failing {
            written: Vec::new(),
            room: LINE_BUFFER + 10,
            failed: false,
        };
        assert!(matches!(
            write_line(&mut out, &big),
            Err(DebugWriteError::Io(_))
        ));
        write_line(&mut out, &small).unwrap();
        let text = String::from_utf8(out.written).unwrap();
        let last = text.lines().last().unwrap();
        assert!(text.lines().count() >= 2, "{}", text.len());
        tailgate_core::receive::http::json_to_protobuf(last.as_bytes()).unwrap();
    }
}
