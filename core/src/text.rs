//! Text helpers the clients share: an error with its causes for messages, and form
//! escaping for the bodies sent to token and STS endpoints. A leaf: it imports nothing of
//! the crate.

/// An error with its sources, `a: b: c`, since hyper's top-level messages are terse
/// (`client error (Connect)` hides `invalid peer certificate: UnknownIssuer`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `application/x-www-form-urlencoded` escaping, as Go's `url.QueryEscape`: letters,
/// digits and `-_.~` kept, a space as `+`, every other byte `%XX`.
pub fn form_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
