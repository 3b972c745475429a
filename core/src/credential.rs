//! A credential a client sends with every request: one header whose value is built from
//! secrets written in the config or read from files, as the Collector's client
//! authenticator extensions (`bearertokenauth`, `basicauth`'s `client_auth`) build theirs.
//!
//! Configs come from the gateway's `extensions:` block (gateway `export::auth`); the
//! credential goes into a [`crate::request_auth::RequestAuth`], which the gRPC client and
//! the gateway's OTLP/HTTP exporter apply to every request (asking [`Credential::value`]
//! once per request).
//!
//! Files are read when the credential is built (a missing or empty one is an error then,
//! so `--check` finds it) and again, at most every [`REREAD_EVERY`], when a request asks
//! for the value: a token that Kubernetes or a secrets agent rotates in place is picked up
//! without a restart. A file that cannot be read later keeps the last good value, with a
//! warning (as the Collector keeps its last token).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use http::{HeaderName, HeaderValue};
use tokio::time::Instant;

/// How often, at most, secret files are read again.
pub const REREAD_EVERY: Duration = Duration::from_secs(10);

/// The least time between two reads forced by refusals ([`Credential::refresh_now`]), so
/// that a backend refusing every request does not have the files read for each.
pub const FORCED_REREAD_EVERY: Duration = Duration::from_secs(1);

/// The longest a request waits for its read of the secret files before it is sent with
/// the last value read (the read goes on; see [`Credential::value`]).
pub const READ_WAIT: Duration = Duration::from_secs(1);

/// Largest secret file read: a token or password is far smaller; a path to a device or a
/// log by mistake is refused rather than read.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Where one secret comes from. Its `Debug` shows a file's path, never inline text.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// Written in the config (usually through `${env:…}`).
    Inline(String),
    /// A regular file's text (the Collector's `filename`, `*_file`).
    File(PathBuf),
    /// Tests only: a read that blocks while `tests::hold_reads` holds it (a file on a hung
    /// network mount), giving the text with the read's number after it.
    #[cfg(test)]
    Slow(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Inline(<redacted>)"),
            Secret::File(path) => f.debug_tuple("File").field(path).finish(),
            #[cfg(test)]
            Secret::Slow(_) => f.write_str("Slow"),
        }
    }
}

/// How the header's value is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// `<scheme> <token>`, or the token alone when `scheme` is empty. The token is the
    /// secret's first line once the text is trimmed, as `bearertokenauth` reads it.
    Token {
        /// `Bearer` by default.
        scheme: String,
        /// The token.
        token: Secret,
    },
    /// `Basic base64(<username>:<password>)`, each secret's text trimmed.
    Basic {
        /// The user name (it may not contain `:`).
        username: Secret,
        /// The password.
        password: Secret,
    },
}

/// Why a credential cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A secret file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// A secret file that is not a regular file, or larger than
    /// [`MAX_SECRET_FILE_BYTES`].
    #[error("{path} is not a secret file: {why}")]
    NotASecretFile {
        /// The file.
        path: PathBuf,
        /// Why.
        why: &'static str,
    },
    /// A secret is empty (an unset `${env:…}` variable, an empty file).
    #[error("the {what} is empty{}", .path.as_ref().map(|p| format!(" ({} has no text)", p.display())).unwrap_or_else(|| " (an unset ${env:…} variable?)".into()))]
    Empty {
        /// `token`, `username` or `password`.
        what: &'static str,
        /// The file it was read from, if any.
        path: Option<PathBuf>,
    },
    /// A Basic user name with `:`, which the receiver would split at.
    #[error("the username contains ':', which Basic authentication cannot carry")]
    ColonInUsername,
    /// The header name is not one HTTP or gRPC can carry.
    #[error("header {0:?} is not a valid header name")]
    HeaderName(String),
    /// The value has characters a header cannot carry (a newline inside a token).
    #[error("the {0} has characters a header cannot carry")]
    HeaderValue(&'static str),
}

/// One header sent with every request, its value kept current. Its `Debug` shows the
/// header's name and where the secrets come from, never their values.
pub struct Credential {
    header: HeaderName,
    scheme: Arc<Scheme>,
    current: Arc<Mutex<Current>>,
    /// Values fetched from elsewhere instead of made from secrets ([`Credential::fetched`]):
    /// `scheme` and `current` are then unused.
    tokens: Option<Arc<dyn FetchedValue>>,
}

/// A header value fetched from elsewhere and kept by its source (OAuth2 tokens,
/// [`crate::oauth2::TokenSource`]), for [`Credential::fetched`].
pub trait FetchedValue: Send + Sync + std::fmt::Debug {
    /// The value for the next request, if there is one.
    fn value(self: Arc<Self>) -> BoxFuture<Option<HeaderValue>>;
    /// After a refusal of a request sent with `sent`: whether another value is to be had
    /// (fetched now if need be).
    fn refresh_after(self: Arc<Self>, sent: HeaderValue) -> BoxFuture<bool>;
    /// The last value fetched, if any, without fetching.
    fn last_value(&self) -> Option<HeaderValue>;
}

/// A boxed future of a [`FetchedValue`].
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tokens {
            Some(tokens) => f
                .debug_struct("Credential")
                .field("header", &self.header)
                .field("oauth2", tokens)
                .finish_non_exhaustive(),
            None => f
                .debug_struct("Credential")
                .field("header", &self.header)
                .field("scheme", &self.scheme)
                .finish_non_exhaustive(),
        }
    }
}

struct Current {
    value: HeaderValue,
    read_at: Instant,
    /// The last read forced by a refusal: they are spaced on their own, so that a key
    /// rotated just after a routine read is still picked up by the first refusal.
    forced_at: Option<Instant>,
    /// A read of the files is under way (at most one at a time: a file on a hung mount
    /// holds one thread of the blocking pool, not one per request).
    reading: bool,
    /// When a failed read was last logged: once a minute at most, as refusals force a
    /// read every second.
    warned_at: Option<Instant>,
}

/// Which read a request asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadKind {
    /// The routine one, when the last is [`REREAD_EVERY`] old.
    Routine,
    /// One forced by a refusal, spaced by [`FORCED_REREAD_EVERY`] among themselves.
    Forced,
}

impl Credential {
    /// Builds the credential for `header`, reading its files now.
    pub fn new(header: &str, scheme: Scheme) -> Result<Self, CredentialError> {
        let header = HeaderName::from_bytes(header.trim().to_ascii_lowercase().as_bytes())
            .map_err(|_| CredentialError::HeaderName(header.to_owned()))?;
        let value = make_value(&scheme)?;
        Ok(Credential {
            header,
            scheme: Arc::new(scheme),
            current: Arc::new(Mutex::new(Current {
                value,
                read_at: Instant::now(),
                forced_at: None,
                reading: false,
                warned_at: None,
            })),
            tokens: None,
        })
    }

    /// `header` with values `tokens` fetches and keeps (`authorization: <type> <token>`
    /// from an OAuth2 token endpoint, [`crate::oauth2`]).
    pub fn fetched(header: HeaderName, tokens: Arc<dyn FetchedValue>) -> Self {
        Credential {
            header,
            scheme: Arc::new(Scheme::Token {
                scheme: String::new(),
                token: Secret::Inline(String::new()),
            }),
            current: Arc::new(Mutex::new(Current {
                value: HeaderValue::from_static(""),
                read_at: Instant::now(),
                forced_at: None,
                reading: false,
                warned_at: None,
            })),
            tokens: Some(tokens),
        }
    }

    /// `authorization: Bearer <token>`, `bearertokenauth`'s defaults.
    pub fn bearer(token: Secret) -> Result<Self, CredentialError> {
        Credential::new(
            "authorization",
            Scheme::Token {
                scheme: "Bearer".into(),
                token,
            },
        )
    }

    /// The header's name (lower case, as gRPC metadata needs it).
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The value last read, without reading anything.
    pub fn last_value(&self) -> HeaderValue {
        if let Some(tokens) = &self.tokens {
            return tokens
                .last_value()
                .unwrap_or_else(|| HeaderValue::from_static(""));
        }
        lock(&self.current).value.clone()
    }

    /// The header's value for the next request. Secret files are read again when the last
    /// read is [`REREAD_EVERY`] old, by the one request that finds it so; the others send
    /// the value they find. The read runs on the blocking pool, not on the runtime's
    /// workers, and is waited for at most [`READ_WAIT`]: a file on a hung network mount
    /// delays one request by that, then the last value is sent. An unreadable or empty
    /// file keeps the last value, with a warning.
    /// With fetched values (OAuth2 tokens), the source's value; empty when it has none
    /// (the token endpoint failed: logged), which the backend refuses.
    pub async fn value(&self) -> HeaderValue {
        if let Some(tokens) = &self.tokens {
            return tokens
                .clone()
                .value()
                .await
                .unwrap_or_else(|| HeaderValue::from_static(""));
        }
        if self.start_read(ReadKind::Routine) {
            self.read_again().await;
        }
        self.last_value()
    }

    /// The header to send: its name and [`Credential::value`].
    pub async fn header_value(&self) -> (HeaderName, HeaderValue) {
        (self.header.clone(), self.value().await)
    }

    /// [`Credential::header_value`] for a request, or why there is none: a fetched source
    /// without a value yet (no token from its endpoint), for which the request is better
    /// held and tried again than sent without one and refused for good.
    pub async fn header_for_request(&self) -> Result<(HeaderName, HeaderValue), String> {
        let (name, value) = self.header_value().await;
        match &self.tokens {
            Some(t) if value.is_empty() => {
                Err(format!("no token yet from {t:?}; held and tried again"))
            }
            _ => Ok((name, value)),
        }
    }

    /// Reads the secret files now, for a request the backend refused as unauthenticated:
    /// whether the value changed (a key rotated since the last read), so that the
    /// request is worth sending again. At most once per [`FORCED_REREAD_EVERY`]; `false`
    /// for inline secrets, while another read is under way, and when the read fails or
    /// takes longer than [`READ_WAIT`].
    /// With fetched values (OAuth2 tokens), the source fetches again (as often).
    pub async fn refresh_now(&self) -> bool {
        if let Some(tokens) = &self.tokens {
            return tokens.clone().refresh_after(self.last_value()).await;
        }
        self.start_read(ReadKind::Forced) && self.read_again().await
    }

    /// [`Credential::refresh_now`] for a request that was sent with `sent`: `true` at once
    /// when the value is another already (rotated, or fetched, since it was sent).
    pub async fn refresh_after(&self, sent: &HeaderValue) -> bool {
        if let Some(tokens) = &self.tokens {
            return tokens.clone().refresh_after(sent.clone()).await;
        }
        if self.last_value() != *sent {
            return true;
        }
        self.refresh_now().await
    }

    /// Whether this request is the one to read the files (then marked as reading).
    fn start_read(&self, read: ReadKind) -> bool {
        if !self.reads_files() {
            return false;
        }
        let mut current = lock(&self.current);
        let due = !current.reading
            && match read {
                ReadKind::Routine => current.read_at.elapsed() >= REREAD_EVERY,
                ReadKind::Forced => current
                    .forced_at
                    .is_none_or(|at| at.elapsed() >= FORCED_REREAD_EVERY),
            };
        if due {
            let now = Instant::now();
            current.reading = true;
            current.read_at = now;
            if read == ReadKind::Forced {
                current.forced_at = Some(now);
            }
        }
        due
    }

    /// Reads the files on the blocking pool and keeps what it reads: whether the value
    /// changed, if the read ended within [`READ_WAIT`]. A read that takes longer goes
    /// on, and its value is kept when it ends.
    async fn read_again(&self) -> bool {
        let scheme = self.scheme.clone();
        let current = self.current.clone();
        let header = self.header.clone();
        // The warning goes where this task's logs go (a test's subscriber, too).
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        // Clears `reading` however the read ends: a panic, or a task the runtime drops
        // unstarted at shutdown, must not stop every later read.
        let reading = Reading(current);
        let read = tokio::task::spawn_blocking(move || {
            let value = make_value(&scheme);
            // `reading` is cleared when the guard drops, after this: only then may the next
            // read start (clearing it here too let a third read start beside a second).
            let mut current = lock(&reading.0);
            match value {
                Ok(value) => {
                    let changed = current.value != value;
                    current.value = value;
                    changed
                }
                Err(error) => {
                    let warn = crate::retry::warn_again(&mut current.warned_at);
                    drop(current);
                    if warn {
                        tracing::dispatcher::with_default(&dispatch, || {
                            tracing::warn!(
                                header = %header,
                                %error,
                                "Cannot read a credential again; sending the last one read (logged once a minute at most)."
                            )
                        });
                    }
                    false
                }
            }
        });
        matches!(tokio::time::timeout(READ_WAIT, read).await, Ok(Ok(true)))
    }

    fn reads_files(&self) -> bool {
        let file = |s: &Secret| match s {
            Secret::Inline(_) => false,
            Secret::File(_) => true,
            #[cfg(test)]
            Secret::Slow(_) => true,
        };
        match &*self.scheme {
            Scheme::Token { token, .. } => file(token),
            Scheme::Basic { username, password } => file(username) || file(password),
        }
    }
}

/// A read of the files under way: dropped, it marks the read over.
struct Reading(Arc<Mutex<Current>>);

impl Drop for Reading {
    fn drop(&mut self) {
        lock(&self.0).reading = false;
    }
}

/// The current value, whatever a panicking holder left (it is a whole value).
fn lock(current: &Mutex<Current>) -> std::sync::MutexGuard<'_, Current> {
    current
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads `secret` (a file's text read now), trimmed; `what` names it if it is empty.
pub fn read_secret(secret: &Secret, what: &'static str) -> Result<String, CredentialError> {
    read(secret, what, false)
}

/// Reads `secret`, trimmed: the inline text or the file's; with `first_line`, only the
/// first line of that (a token).
fn read(secret: &Secret, what: &'static str, first_line: bool) -> Result<String, CredentialError> {
    let (text, path) = match secret {
        Secret::Inline(s) => (s.clone(), None),
        // `--check` on a machine without the file (CI; it is mounted where the config
        // runs): named in a note, and a stand-in value checked in its place.
        Secret::File(path) if crate::config::absent_for_check(what, path) => {
            return Ok("absent-at-check".to_owned())
        }
        Secret::File(path) => (read_file(path)?, Some(path.clone())),
        #[cfg(test)]
        Secret::Slow(text) => (tests::slow_read(text), None),
    };
    let mut text = text.trim();
    if first_line {
        text = text.lines().next().unwrap_or_default().trim();
    }
    if text.is_empty() {
        return Err(CredentialError::Empty { what, path });
    }
    Ok(text.to_owned())
}

/// A regular file's text, at most [`MAX_SECRET_FILE_BYTES`]. The file is opened without
/// blocking and its type checked on the open file (fstat), so a FIFO (whose open would wait
/// for a writer) or a device (which may never end) put at the path, even between two
/// reads, is refused, not read.
fn read_file(path: &std::path::Path) -> Result<String, CredentialError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |error| CredentialError::Read {
        path: path.to_owned(),
        error,
    };
    let refuse = |why| CredentialError::NotASecretFile {
        path: path.to_owned(),
        why,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(failed)?;
    let meta = file.metadata().map_err(failed)?;
    if !meta.is_file() {
        return Err(refuse("not a regular file"));
    }
    if meta.len() > MAX_SECRET_FILE_BYTES {
        return Err(refuse("larger than 64 KiB"));
    }
    let mut text = String::new();
    file.take(MAX_SECRET_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(failed)?;
    Ok(text)
}

fn make_value(scheme: &Scheme) -> Result<HeaderValue, CredentialError> {
    let (text, what) = match scheme {
        Scheme::Token { scheme, token } => {
            let token = read(token, "token", true)?;
            let text = if scheme.is_empty() {
                token
            } else {
                format!("{scheme} {token}")
            };
            (text, "token")
        }
        Scheme::Basic { username, password } => {
            let user = read(username, "username", false)?;
            if user.contains(':') {
                return Err(CredentialError::ColonInUsername);
            }
            let password = read(password, "password", false)?;
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            (format!("Basic {encoded}"), "password")
        }
    };
    let mut value = HeaderValue::from_str(&text).map_err(|_| CredentialError::HeaderValue(what))?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Whether [`Secret::Slow`] reads block now, and how many there were.
    static HELD: (std::sync::Mutex<bool>, std::sync::Condvar) =
        (std::sync::Mutex::new(false), std::sync::Condvar::new());
    static SLOW_READS: AtomicU64 = AtomicU64::new(0);

    fn hold_reads(held: bool) {
        *HELD
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = held;
        HELD.1.notify_all();
    }

    pub(super) fn slow_read(text: &str) -> String {
        let mut held = HELD
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *held {
            held = HELD
                .1
                .wait(held)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        let n = SLOW_READS.fetch_add(1, Ordering::SeqCst) + 1;
        format!("{text}{n}")
    }

    /// Scenario: a secret whose read blocks (a file on a hung network mount), read again
    /// for a refused request, then asked for again while that read runs, then released.
    /// Guarantees: the request waits [`READ_WAIT`], not the whole read, and goes with the
    /// last value; no second read starts while one runs (that call returns at once); the
    /// read's value is kept when it ends. Paused clock: a blocking task holds the clock
    /// still, so the wait is advanced by hand.
    #[tokio::test(start_paused = true)]
    async fn a_hung_read_delays_one_request_by_the_wait_and_starts_no_other() {
        let c = Arc::new(
            Credential::new(
                "x-api-key",
                Scheme::Token {
                    scheme: String::new(),
                    token: Secret::Slow("key-".into()),
                },
            )
            .unwrap(),
        );
        assert_eq!(c.last_value(), "key-1");
        hold_reads(true);
        // Released however the test ends: a blocked read would hold the runtime's drop.
        struct Release;
        impl Drop for Release {
            fn drop(&mut self) {
                hold_reads(false);
            }
        }
        let _release = Release;
        let forced = tokio::spawn({
            let c = c.clone();
            async move { c.refresh_now().await }
        });
        tokio::task::yield_now().await;
        assert!(!forced.is_finished(), "waiting for the read");
        tokio::time::advance(READ_WAIT).await;
        assert!(!forced.await.unwrap(), "the read outlasted the wait");
        assert_eq!(c.value().await, "key-1", "the last value, at once");
        tokio::time::advance(FORCED_REREAD_EVERY).await;
        let second = tokio::spawn({
            let c = c.clone();
            async move { c.refresh_now().await }
        });
        tokio::task::yield_now().await;
        assert!(
            second.is_finished(),
            "no second read while one runs: returned at once"
        );
        assert!(!second.await.unwrap());
        hold_reads(false);
        for _ in 0..100 {
            if c.last_value() == "key-2" {
                break;
            }
            // Ends once the blocking read has (it holds the clock still until then).
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(c.last_value(), "key-2", "the read's value, kept");
        assert_eq!(
            SLOW_READS.load(Ordering::SeqCst),
            2,
            "one read at load, one since"
        );
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tailgate-cred-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Scenario: each extension's way of writing the value. Guarantees: `Bearer <token>`,
    /// the token alone with an empty scheme, and Basic as RFC 7617 (and Go's
    /// `SetBasicAuth`) writes it.
    #[test]
    fn values_are_written_as_the_collectors_extensions_write_them() {
        let bearer = |scheme: &str| {
            Credential::new(
                "Authorization",
                Scheme::Token {
                    scheme: scheme.into(),
                    token: Secret::Inline("t0k".into()),
                },
            )
            .unwrap()
        };
        let c = bearer("Bearer");
        assert_eq!(c.header().as_str(), "authorization");
        assert_eq!(c.last_value(), "Bearer t0k");
        assert!(c.last_value().is_sensitive());
        assert_eq!(bearer("").last_value(), "t0k");
        // A token is its text's first line, trimmed, inline as from a file: an
        // `${env:…}` from a Kubernetes secret often ends in a newline.
        for written in ["t0k\n", "\n  t0k \nsecond line\n"] {
            let c = Credential::bearer(Secret::Inline(written.into())).unwrap();
            assert_eq!(c.last_value(), "Bearer t0k", "{written:?}");
        }
        let basic = Credential::new(
            "authorization",
            Scheme::Basic {
                username: Secret::Inline("Aladdin".into()),
                password: Secret::Inline("open sesame".into()),
            },
        )
        .unwrap();
        // RFC 7617's example.
        assert_eq!(basic.last_value(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        // From files, each trimmed whole (a password may hold spaces inside).
        let dir = scratch("basic");
        std::fs::write(dir.join("user"), "Aladdin\n").unwrap();
        std::fs::write(dir.join("password"), "  open sesame\n").unwrap();
        let from_files = Credential::new(
            "authorization",
            Scheme::Basic {
                username: Secret::File(dir.join("user")),
                password: Secret::File(dir.join("password")),
            },
        )
        .unwrap();
        assert_eq!(from_files.last_value(), basic.last_value());
        std::fs::remove_dir_all(&dir).ok();
        // Debug output (a log line, a panic message) carries no secret.
        let shown = format!("{basic:?} {c:?}");
        assert!(
            !shown.contains("open sesame") && !shown.contains("t0k"),
            "{shown}"
        );
        assert!(!shown.contains("QWxh"), "{shown}");
    }

    /// Scenario: secrets that would make every request fail. Guarantees: refused when the
    /// credential is built, each with its own variant.
    #[test]
    fn unusable_secrets_are_refused_by_kind() {
        let token = |t: &str| Credential::bearer(Secret::Inline(t.into()));
        assert!(matches!(
            token(""),
            Err(CredentialError::Empty {
                what: "token",
                path: None
            })
        ));
        assert!(matches!(
            token("a\u{1}b"),
            Err(CredentialError::HeaderValue("token"))
        ));
        let basic = Credential::new(
            "authorization",
            Scheme::Basic {
                username: Secret::Inline("a:b".into()),
                password: Secret::Inline("p".into()),
            },
        );
        assert!(matches!(basic, Err(CredentialError::ColonInUsername)));
        let missing = Credential::bearer(Secret::File("/nonexistent/tailgate/token".into()));
        assert!(matches!(missing, Err(CredentialError::Read { .. })));
        // A directory (or a FIFO, a device) is not read: it could block or never end.
        let dir = Credential::bearer(Secret::File(std::env::temp_dir()));
        assert!(matches!(dir, Err(CredentialError::NotASecretFile { .. })));
        // A FIFO is opened without blocking and refused (a blocking open waits until a
        // writer comes: this test would hang).
        let fifo_dir = scratch("fifo");
        let fifo = fifo_dir.join("token");
        crate::test_util::make_fifo(&fifo);
        let c = Credential::bearer(Secret::File(fifo));
        assert!(matches!(c, Err(CredentialError::NotASecretFile { .. })));
        std::fs::remove_dir_all(&fifo_dir).ok();
        let empty_dir = scratch("empty");
        let empty = empty_dir.join("token");
        std::fs::write(&empty, "\n  \n").unwrap();
        let empty = Credential::bearer(Secret::File(empty));
        assert!(matches!(
            empty,
            Err(CredentialError::Empty { path: Some(_), .. })
        ));
        std::fs::remove_dir_all(&empty_dir).ok();
        let bad_name = Credential::new(
            "x header",
            Scheme::Token {
                scheme: String::new(),
                token: Secret::Inline("t".into()),
            },
        );
        assert!(matches!(bad_name, Err(CredentialError::HeaderName(_))));
    }

    /// Scenario: a token file rotated in place, then removed, then replaced by a FIFO, by
    /// a file over 64 KiB, and written again.
    /// Guarantees: its first line, trimmed, is sent; the new token is sent once
    /// [`REREAD_EVERY`] has passed (not before); a file gone later, a FIFO in its place
    /// (opened without blocking) or an oversized file keeps the last token, with a warning
    /// that names no secret, once a minute at most; a good file again is picked up
    /// (paused clock).
    #[tokio::test(start_paused = true)]
    async fn a_rotated_token_file_is_picked_up() {
        let (log, _guard) = crate::test_util::CapturedLog::install();
        let dir = scratch("rotate");
        let path = dir.join("token");
        std::fs::write(&path, "first \nsecond-line-ignored\n").unwrap();
        let c = Credential::new(
            "x-api-key",
            Scheme::Token {
                scheme: String::new(),
                token: Secret::File(path.clone()),
            },
        )
        .unwrap();
        assert_eq!(c.value().await, "first");
        std::fs::write(&path, "rotated\n").unwrap();
        tokio::time::advance(REREAD_EVERY / 2).await;
        assert_eq!(c.value().await, "first");
        tokio::time::advance(REREAD_EVERY / 2).await;
        assert_eq!(c.value().await, "rotated");
        // A refusal forces a read: at once, even just after a routine read, and true when
        // the file changed; forced reads at most once a second; false when unchanged.
        std::fs::write(&path, "forced\n").unwrap();
        assert!(c.refresh_now().await, "right after a routine read");
        assert_eq!(c.value().await, "forced");
        std::fs::write(&path, "again\n").unwrap();
        assert!(
            !c.refresh_now().await,
            "within a second of the last forced read"
        );
        tokio::time::advance(FORCED_REREAD_EVERY).await;
        assert!(c.refresh_now().await);
        assert_eq!(c.value().await, "again");
        tokio::time::advance(FORCED_REREAD_EVERY).await;
        assert!(!c.refresh_now().await, "unchanged");
        std::fs::write(&path, "rotated\n").unwrap();
        tokio::time::advance(REREAD_EVERY).await;
        assert_eq!(c.value().await, "rotated");
        let warned = |n| {
            assert_eq!(
                log.count("Cannot read a credential again"),
                n,
                "{}",
                String::from_utf8_lossy(&log.text())
            )
        };
        warned(0);
        std::fs::remove_file(&path).unwrap();
        tokio::time::advance(REREAD_EVERY).await;
        assert_eq!(c.value().await, "rotated");
        warned(1);
        // Replaced by a FIFO: opened without blocking, refused (a blocking open would
        // wait for a writer). Logged once a minute at most: refusals force a read a second.
        crate::test_util::make_fifo(&path);
        tokio::time::advance(REREAD_EVERY).await;
        assert_eq!(c.value().await, "rotated");
        tokio::time::advance(FORCED_REREAD_EVERY).await;
        assert!(!c.refresh_now().await);
        warned(1);
        std::fs::remove_file(&path).unwrap();
        let big = "k".repeat(MAX_SECRET_FILE_BYTES as usize + 1);
        std::fs::write(&path, &big).unwrap();
        tokio::time::advance(crate::retry::REWARN_AFTER).await;
        assert_eq!(c.value().await, "rotated");
        warned(2);
        assert!(log.count("larger than 64 KiB") == 1 && log.count("kkkk") == 0);
        std::fs::write(&path, "back\n").unwrap();
        tokio::time::advance(REREAD_EVERY).await;
        assert_eq!(c.value().await, "back");
        warned(2);
        assert_eq!(log.count("rotated"), 0, "no token in the log");
        std::fs::remove_dir_all(&dir).ok();
    }
}
