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

/// The most of a peer's text (an error answer's body, a partial success's message) kept
/// for a log line.
pub const PEER_TEXT_MAX: usize = 1024;

/// Text a backend or peer sent, fit for one log line: control characters escaped (`\n`,
/// `\u{1b}`), so that a body holding a newline cannot forge a log line of its own nor a
/// terminal escape, and at most [`PEER_TEXT_MAX`] bytes of it, the rest counted (a hostile
/// check forged a line `ERROR … FAKE LINE` through an error answer's body).
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(PEER_TEXT_MAX) + 16);
    for (at, c) in text.char_indices() {
        if out.len() >= PEER_TEXT_MAX {
            out.push_str(&format!("… ({} more bytes)", text.len() - at));
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: a peer's text with a newline, an escape sequence and 5,000 bytes.
    /// Guarantees: one line, the escapes written out, at most the bound and a count of the
    /// rest; plain text unchanged.
    #[test]
    fn peer_text_is_one_bounded_line() {
        assert_eq!(
            printable("bad\n2026 ERROR fake\u{1b}[31m"),
            "bad\\n2026 ERROR fake\\u{1b}[31m"
        );
        let long = printable(&"x".repeat(5000));
        assert!(long.starts_with(&"x".repeat(PEER_TEXT_MAX)));
        assert!(long.ends_with("… (3976 more bytes)"), "{long}");
        assert_eq!(printable("fine: too old"), "fine: too old");
    }
}
