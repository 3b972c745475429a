//! The `debug` exporter (`export.debug[/name]`): writes each request it would send as one
//! line of OTLP JSON, to stdout or appended to a file. The lines are what
//! `tailgate-gateway explain --traces` reads, so a day of kept traces can be replayed
//! against a changed policy file.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

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
    /// Span bytes queued for this exporter before the shards wait. Default 64 MiB.
    #[serde(default = "super::batch::default_queue_bytes")]
    pub queue_bytes: u64,
}

impl DebugConfig {
    /// Opens the output. Must be called inside a Tokio runtime.
    pub fn writer(&self) -> std::io::Result<DebugWriter> {
        let out: Box<dyn Write + Send> = match &self.path {
            None => Box::new(std::io::stdout()),
            Some(p) => Box::new(
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

/// Where `debug` lines go. Writes happen on Tokio's blocking pool, one at a time (the
/// exporter task awaits each), so the lock is never contended.
pub struct DebugWriter {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
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
        use tailgate_core::receive::otlp_json_out::{write_json, JsonWriteError};
        let out = self.out.clone();
        tokio::task::spawn_blocking(move || {
            write_json(&body, &mut std::io::sink())?;
            let mut out = out.lock().map_err(|_| DebugWriteError::Poisoned)?;
            let mut line = std::io::BufWriter::with_capacity(LINE_BUFFER, &mut *out);
            match write_json(&body, &mut line) {
                Ok(()) => {}
                Err(JsonWriteError::Io(e)) => return Err(DebugWriteError::Io(e)),
                Err(e) => return Err(e.into()),
            }
            line.write_all(b"\n")
                .and_then(|()| line.flush())
                .map_err(DebugWriteError::Io)?;
            drop(line);
            out.flush().map_err(DebugWriteError::Io)
        })
        .await
        .map_err(|_| DebugWriteError::Poisoned)?
    }
}
