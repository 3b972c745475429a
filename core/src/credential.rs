//! A credential a client sends with every request: one header whose value is built from
//! secrets written in the config or read from files, as the Collector's client
//! authenticator extensions (`bearertokenauth`, `basicauth`'s `client_auth`) build theirs.
//!
//! Configs come from the gateway's `extensions:` block (gateway `export::auth`); the value
//! goes to the gRPC client ([`crate::forward::GrpcClient::with_credential`]) and the
//! gateway's OTLP/HTTP exporter, which ask [`Credential::value`] once per request.
//!
//! Files are read when the credential is built (a missing or empty one is an error then,
//! so `--check` finds it) and again, at most every [`REREAD_EVERY`], when a request asks
//! for the value: a token that Kubernetes or a secrets agent rotates in place is picked up
//! without a restart. A file that cannot be read later keeps the last good value, with a
//! warning (as the Collector keeps its last token).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use http::{HeaderName, HeaderValue};
use tokio::time::Instant;

/// How often, at most, secret files are read again.
pub const REREAD_EVERY: Duration = Duration::from_secs(10);

/// Where one secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// Written in the config (usually through `${env:…}`).
    Inline(String),
    /// The first line of a file, trimmed (the Collector's `filename`, `*_file`).
    File(PathBuf),
}

/// How the header's value is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// `<scheme> <token>`, or the token alone when `scheme` is empty.
    Token {
        /// `Bearer` by default.
        scheme: String,
        /// The token.
        token: Secret,
    },
    /// `Basic base64(<username>:<password>)`.
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
    /// A secret is empty (an unset `${env:…}` variable, an empty file).
    #[error("the {what} is empty{}", .path.as_ref().map(|p| format!(" ({} has no text on its first line)", p.display())).unwrap_or_else(|| " (an unset ${env:…} variable?)".into()))]
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

/// One header sent with every request, its value kept current.
#[derive(Debug)]
pub struct Credential {
    header: HeaderName,
    scheme: Scheme,
    current: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    value: HeaderValue,
    read_at: Instant,
}

impl Credential {
    /// Builds the credential for `header`, reading its files now.
    pub fn new(header: &str, scheme: Scheme) -> Result<Self, CredentialError> {
        let header = HeaderName::from_bytes(header.trim().to_ascii_lowercase().as_bytes())
            .map_err(|_| CredentialError::HeaderName(header.to_owned()))?;
        let value = make_value(&scheme)?;
        Ok(Credential {
            header,
            scheme,
            current: Mutex::new(Current {
                value,
                read_at: Instant::now(),
            }),
        })
    }

    /// The header's name (lower case, as gRPC metadata needs it).
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The header's value for the next request: secret files are read again when the last
    /// read is [`REREAD_EVERY`] old; an unreadable or empty one keeps the last value.
    pub fn value(&self) -> HeaderValue {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.reads_files() && current.read_at.elapsed() >= REREAD_EVERY {
            current.read_at = Instant::now();
            match make_value(&self.scheme) {
                Ok(value) => current.value = value,
                Err(error) => tracing::warn!(
                    header = %self.header,
                    %error,
                    "Cannot read a credential again; sending the last one read."
                ),
            }
        }
        current.value.clone()
    }

    fn reads_files(&self) -> bool {
        let file = |s: &Secret| matches!(s, Secret::File(_));
        match &self.scheme {
            Scheme::Token { token, .. } => file(token),
            Scheme::Basic { username, password } => file(username) || file(password),
        }
    }
}

/// Reads `secret`: the inline text, or the first line of the file, trimmed.
fn read(secret: &Secret, what: &'static str) -> Result<String, CredentialError> {
    let (text, path) = match secret {
        Secret::Inline(s) => (s.clone(), None),
        Secret::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|error| CredentialError::Read {
                path: path.clone(),
                error,
            })?;
            let first = text.lines().next().unwrap_or("").trim().to_owned();
            (first, Some(path.clone()))
        }
    };
    if text.trim().is_empty() {
        return Err(CredentialError::Empty { what, path });
    }
    Ok(text)
}

fn make_value(scheme: &Scheme) -> Result<HeaderValue, CredentialError> {
    let (text, what) = match scheme {
        Scheme::Token { scheme, token } => {
            let token = read(token, "token")?;
            let text = if scheme.is_empty() {
                token
            } else {
                format!("{scheme} {token}")
            };
            (text, "token")
        }
        Scheme::Basic { username, password } => {
            let user = read(username, "username")?;
            if user.contains(':') {
                return Err(CredentialError::ColonInUsername);
            }
            let password = read(password, "password")?;
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
        assert_eq!(c.value(), "Bearer t0k");
        assert!(c.value().is_sensitive());
        assert_eq!(bearer("").value(), "t0k");
        let basic = Credential::new(
            "authorization",
            Scheme::Basic {
                username: Secret::Inline("Aladdin".into()),
                password: Secret::Inline("open sesame".into()),
            },
        )
        .unwrap();
        // RFC 7617's example.
        assert_eq!(basic.value(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    }

    /// Scenario: secrets that would make every request fail. Guarantees: refused when the
    /// credential is built, each with its own variant.
    #[test]
    fn unusable_secrets_are_refused_by_kind() {
        let token = |t: &str| {
            Credential::new(
                "authorization",
                Scheme::Token {
                    scheme: "Bearer".into(),
                    token: Secret::Inline(t.into()),
                },
            )
        };
        assert!(matches!(
            token(""),
            Err(CredentialError::Empty {
                what: "token",
                path: None
            })
        ));
        assert!(matches!(
            token("a\nb"),
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
        let missing = Credential::new(
            "authorization",
            Scheme::Token {
                scheme: "Bearer".into(),
                token: Secret::File("/nonexistent/tailgate/token".into()),
            },
        );
        assert!(matches!(missing, Err(CredentialError::Read { .. })));
        let bad_name = Credential::new(
            "x header",
            Scheme::Token {
                scheme: String::new(),
                token: Secret::Inline("t".into()),
            },
        );
        assert!(matches!(bad_name, Err(CredentialError::HeaderName(_))));
    }

    /// Scenario: a token file rotated in place, then removed. Guarantees: its first line,
    /// trimmed, is sent; the new token is sent once [`REREAD_EVERY`] has passed (not
    /// before); a file gone later keeps the last token (paused clock).
    #[tokio::test(start_paused = true)]
    async fn a_rotated_token_file_is_picked_up() {
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
        assert_eq!(c.value(), "first");
        std::fs::write(&path, "rotated\n").unwrap();
        tokio::time::advance(REREAD_EVERY / 2).await;
        assert_eq!(c.value(), "first");
        tokio::time::advance(REREAD_EVERY / 2).await;
        assert_eq!(c.value(), "rotated");
        std::fs::remove_file(&path).unwrap();
        tokio::time::advance(REREAD_EVERY).await;
        assert_eq!(c.value(), "rotated");
        std::fs::remove_dir_all(&dir).ok();
    }
}
