//! Regular expressions as the Collector reads them: Go's `regexp` syntax (RE2), compiled
//! with the `regex` crate.
//!
//! Policy files come from Collector configs, whose patterns (`string_attribute` with
//! `enabled_regex_matching`, OTTL's `IsMatch`, the `attributes` actions' `pattern`) were
//! written for and tested against Go. The two syntaxes agree on most patterns, not all,
//! and where they differ a working Collector config must not be refused or decide
//! differently. [`translate`] rewrites a Go pattern into one the crate reads the same way:
//!
//! * `\d`, `\s`, `\w` (and `\D`, `\S`, `\W`, in or out of a class) are ASCII in Go, Unicode
//!   in the crate: they become `[0-9]`, `[\t\n\f\r ]`, `[0-9A-Za-z_]`; `\b` and `\B` are
//!   ASCII word boundaries (`(?-u:\b)`).
//! * A `{` that does not start a valid repeat (`{n}`, `{n,}`, `{n,m}`) is a literal in Go
//!   (`/users/{id}`, `a{,3}`); the crate refuses it. It is escaped. Go refuses repeat
//!   counts over 1000; so does this.
//! * `\Q…\E` quotes literal text; `\0`, `\012`, `\123` are octal character codes; a lone
//!   `\1` to `\7` is a backreference, which Go refuses, and so does this.
//! * In a class, `[` (other than `[:alpha:]`), `&&`, `--` and `~~` are literals in Go but
//!   nesting and set operators in the crate: they are escaped.
//!
//! Go matches a string of invalid UTF-8 rune by rune (each bad byte a U+FFFD); the crate's
//! byte regexes match such bytes only with `.`-like classes: values that are not UTF-8 are
//! rare in attributes and this difference is kept.

/// Why a pattern is refused.
#[derive(Debug, thiserror::Error)]
pub enum GoRegexError {
    /// A repeat count over Go's limit.
    #[error("invalid repeat count {0}: at most 1000, as in Go's regexp")]
    RepeatCount(String),
    /// A flag Go does not have (`x`).
    #[error("invalid or unsupported flag {0:?}: Go's regexp has i, m, s and U")]
    Flag(char),
    /// `\1` to `\7` alone: a backreference.
    #[error(
        "invalid escape \\{0}: backreferences are not supported (Go's regexp refuses them too)"
    )]
    Backreference(char),
    /// Not a valid expression.
    #[error(transparent)]
    Regex(#[from] regex::Error),
}

/// Go's largest repeat count.
const MAX_REPEAT: u32 = 1000;

/// `pattern` (Go syntax) in the `regex` crate's syntax, meaning the same.
pub fn translate(pattern: &str) -> Result<String, GoRegexError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if i + 1 < chars.len() => {
                i = escape(&chars, i + 1, false, &mut out)?;
                continue;
            }
            '[' => {
                i = class(&chars, i, &mut out)?;
                continue;
            }
            '(' if chars.get(i + 1) == Some(&'?') => {
                // Flags: Go knows i, m, s and U (the crate also x, R, u).
                for &f in chars[i + 2..]
                    .iter()
                    .take_while(|f| !matches!(f, ':' | ')' | 'P' | '<'))
                {
                    if !matches!(f, 'i' | 'm' | 's' | 'U' | '-') {
                        return Err(GoRegexError::Flag(f));
                    }
                }
                out.push(c);
            }
            '{' => {
                match repeat(&chars, i)? {
                    Some(end) => {
                        out.extend(&chars[i..end]);
                        i = end;
                    }
                    None => {
                        out.push_str("\\{");
                        i += 1;
                    }
                }
                continue;
            }
            _ => out.push(c),
        }
        i += 1;
    }
    Ok(out)
}

/// A repeat `{n}`, `{n,}` or `{n,m}` starting at `chars[at] == '{'`: the index after its
/// `}`, or `None` when the brace is a literal (Go's rule).
fn repeat(chars: &[char], at: usize) -> Result<Option<usize>, GoRegexError> {
    let digits = |from: usize| {
        let n = chars[from..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        (n, from + n)
    };
    // Go reads a count with a leading zero (`{01}`) as no count: the brace is a literal.
    let leading_zero = |from: usize, n: usize| n > 1 && chars[from] == '0';
    let (n, mut j) = digits(at + 1);
    if n == 0 || leading_zero(at + 1, n) {
        return Ok(None);
    }
    let mut counts = vec![&chars[at + 1..j]];
    if chars.get(j) == Some(&',') {
        let (m, k) = digits(j + 1);
        if leading_zero(j + 1, m) {
            return Ok(None);
        }
        if m > 0 {
            counts.push(&chars[j + 1..k]);
        }
        j = k;
    }
    if chars.get(j) != Some(&'}') {
        return Ok(None);
    }
    for count in counts {
        let text: String = count.iter().collect();
        if text.parse::<u32>().map_or(true, |v| v > MAX_REPEAT) {
            return Err(GoRegexError::RepeatCount(text));
        }
    }
    Ok(Some(j + 1))
}

/// Writes the escape whose letter is `chars[at]` (after a backslash); `in_class` inside
/// brackets. Returns the index after it.
fn escape(
    chars: &[char],
    at: usize,
    in_class: bool,
    out: &mut String,
) -> Result<usize, GoRegexError> {
    let c = chars[at];
    let ascii = |class: &str, negated: bool, out: &mut String| match (in_class, negated) {
        (true, false) => out.push_str(class),
        (_, true) => out.push_str(&format!("[^{class}]")),
        (false, false) => out.push_str(&format!("[{class}]")),
    };
    match c {
        'd' | 'D' => ascii("0-9", c == 'D', out),
        's' | 'S' => ascii("\\t\\n\\f\\r ", c == 'S', out),
        'w' | 'W' => ascii("0-9A-Za-z_", c == 'W', out),
        'b' | 'B' if !in_class => {
            out.push_str(&format!("(?-u:\\{c})"));
        }
        'Q' if !in_class => {
            let rest: String = chars[at + 1..].iter().collect();
            let (literal, used) = match rest.find("\\E") {
                Some(end) => (&rest[..end], rest[..end].chars().count() + 2),
                None => (rest.as_str(), rest.chars().count()),
            };
            out.push_str(&regex::escape(literal));
            return Ok(at + 1 + used);
        }
        '0'..='7' => {
            // Go: `\0` and up to two more octal digits, or `\1`-`\7` followed by a digit
            // (a single one is a backreference).
            let next_is_octal = chars.get(at + 1).is_some_and(|d| ('0'..='7').contains(d));
            if c != '0' && !next_is_octal {
                return Err(GoRegexError::Backreference(c));
            }
            let mut value = 0u32;
            let mut j = at;
            while j < chars.len() && j < at + 3 && ('0'..='7').contains(&chars[j]) {
                value = value * 8 + chars[j].to_digit(8).unwrap_or(0);
                j += 1;
            }
            out.push_str(&format!("\\x{{{value:X}}}"));
            return Ok(j);
        }
        'x' | 'p' | 'P' if chars.get(at + 1) == Some(&'{') => {
            // `\x{263a}`, `\p{Greek}`: the braces are the escape's, not a repeat.
            let end = chars[at..]
                .iter()
                .position(|&c| c == '}')
                .map_or(chars.len(), |p| at + p + 1);
            out.push('\\');
            match (c, chars.get(at + 2)) {
                // Go's `\p{^Greek}` is `\P{Greek}` (and the other way round).
                ('p' | 'P', Some('^')) => {
                    out.push(if c == 'p' { 'P' } else { 'p' });
                    out.push('{');
                    out.extend(&chars[at + 3..end]);
                }
                _ => out.extend(&chars[at..end]),
            }
            return Ok(end);
        }
        // Escaped punctuation is the character in Go; the crate reads `\<` and `\>` as
        // word boundaries.
        '<' | '>' => out.push(c),
        _ => {
            out.push('\\');
            out.push(c);
        }
    }
    Ok(at + 1)
}

/// Writes the class starting at `chars[at] == '['`; returns the index after its `]`.
fn class(chars: &[char], at: usize, out: &mut String) -> Result<usize, GoRegexError> {
    out.push('[');
    let mut i = at + 1;
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    // A `]` first is a literal.
    if chars.get(i) == Some(&']') {
        out.push_str("\\]");
        i += 1;
    }
    let mut previous = '\0';
    while i < chars.len() {
        let c = chars[i];
        match c {
            ']' => {
                out.push(']');
                return Ok(i + 1);
            }
            '\\' if i + 1 < chars.len() => {
                let perl = matches!(chars[i + 1], 'd' | 'D' | 's' | 'S' | 'w' | 'W');
                i = escape(chars, i + 1, true, out)?;
                // After a Perl class, Go reads `-` as a literal dash (`[\w-.]`); written out
                // as ranges, the crate would read a range.
                if perl && chars.get(i) == Some(&'-') {
                    out.push_str("\\-");
                    i += 1;
                }
                previous = '\\';
                continue;
            }
            '[' if chars.get(i + 1) == Some(&':') => {
                // `[:alpha:]` and `[:^alpha:]`, as they are.
                match chars[i..].iter().position(|&c| c == ']') {
                    Some(end) if end >= 3 && chars[i + end - 1] == ':' => {
                        out.extend(&chars[i..=i + end]);
                        i += end + 1;
                        previous = ']';
                        continue;
                    }
                    _ => out.push_str("\\["),
                }
            }
            '[' | '&' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '-' if previous == '-' => out.push_str("\\-"),
            _ => out.push(c),
        }
        previous = c;
        i += 1;
    }
    // Unclosed: let the crate say so.
    Ok(i)
}

/// A byte regex of a Go pattern.
pub fn bytes_regex(pattern: &str) -> Result<regex::bytes::Regex, GoRegexError> {
    Ok(regex::bytes::Regex::new(&translate(pattern)?)?)
}

/// A byte regex of a Go pattern that arrived with the data (an OTTL pattern read from a
/// span): compiled with a size limit of `size_limit` bytes, so a hostile pattern costs a
/// bounded time to refuse.
pub fn bytes_regex_bounded(
    pattern: &str,
    size_limit: usize,
) -> Result<regex::bytes::Regex, GoRegexError> {
    Ok(regex::bytes::RegexBuilder::new(&translate(pattern)?)
        .size_limit(size_limit)
        .dfa_size_limit(size_limit)
        .build()?)
}

/// A string regex of a Go pattern.
pub fn str_regex(pattern: &str) -> Result<regex::Regex, GoRegexError> {
    Ok(regex::Regex::new(&translate(pattern)?)?)
}

/// A byte regex set of Go patterns.
pub fn bytes_regex_set<S: AsRef<str>>(
    patterns: &[S],
) -> Result<regex::bytes::RegexSet, GoRegexError> {
    let translated = patterns
        .iter()
        .map(|p| translate(p.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(regex::bytes::RegexSet::new(translated)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        let bytes = bytes_regex(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        let string = str_regex(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        assert_eq!(bytes.is_match(text.as_bytes()), string.is_match(text));
        string.is_match(text)
    }

    /// Guarantees: Perl classes and word boundaries are ASCII, as in Go's RE2, in and out of
    /// brackets.
    #[test]
    fn perl_classes_are_ascii() {
        assert!(!matches(r"^\d$", "٣"));
        assert!(matches(r"^\d$", "7"));
        assert!(!matches(r"^\w$", "é"));
        assert!(matches(r"^\w+$", "a_Z9"));
        assert!(!matches(r"^\s$", "\u{a0}"));
        assert!(matches(r"^\s$", "\t"));
        assert!(!matches(r"^\s$", "\u{0b}"), "Go's \\s has no vertical tab");
        assert!(matches(r"\bé", "xé"), "é is not a word character");
        assert!(!matches(r"x\b", "xa"));
        assert!(matches(r"^\D\W\S$", "é é"));
        assert!(matches(r"^[\d\s]+$", "1 2"));
        assert!(!matches(r"^[\d]$", "٣"));
        assert!(matches(r"^[^\d]$", "٣"));
        assert!(matches(r"^[a\D]$", "٣"));
        assert!(matches(r"^\pL$", "é"), "Unicode classes stay Unicode");
    }

    /// Guarantees: braces that are not a repeat are literals; repeats still repeat, up to
    /// Go's limit of 1000.
    #[test]
    fn braces_that_are_not_repeats_are_literals() {
        assert!(matches(r"^/users/{id}$", "/users/{id}"));
        assert!(matches(r"^a{$", "a{"));
        assert!(matches(r"^x{2,$", "x{2,"));
        assert!(matches(r"^a{,3}$", "a{,3}"));
        assert!(matches(r"^a{}$", "a{}"));
        assert!(matches(r"^a{2}$", "aa"));
        assert!(matches(r"^a{2,}$", "aaaa"));
        assert!(matches(r"^a{1,2}b$", "ab"));
        assert!(matches(r"^a{1000}$", &"a".repeat(1000)));
        assert!(matches!(
            translate("a{1001}"),
            Err(GoRegexError::RepeatCount(n)) if n == "1001"
        ));
        assert!(matches!(
            translate("a{1,99999999999}"),
            Err(GoRegexError::RepeatCount(_))
        ));
    }

    /// Guarantees: `\Q…\E` quotes, octal escapes are characters, a lone `\1` is refused.
    #[test]
    fn quotes_octal_and_backreferences() {
        assert!(matches(r"^\Qa.b\E$", "a.b"));
        assert!(!matches(r"^\Qa.b\E$", "axb"));
        assert!(matches(r"^\Q[x]{y}", "[x]{y}"), "unterminated: to the end");
        assert!(matches(r"^\141$", "a"));
        assert!(matches(r"^\0$", "\0"));
        assert!(matches(r"^\12$", "\n"));
        assert!(matches(r"^\1410$", "a0"), "three digits at most");
        assert!(matches!(
            translate(r"(a)\1"),
            Err(GoRegexError::Backreference('1'))
        ));
    }

    /// Guarantees: cases a review found: a dash after a Perl class in brackets is a
    /// literal, `\<` and `\>` are the characters, `\p{^X}` negates, a count with a leading
    /// zero is no count, `\18` is refused, and so is the flag `x`.
    #[test]
    fn review_cases() {
        assert!(
            matches(r"^[\w-\.]+@x$", "a-b.c@x"),
            "the widely copied email pattern"
        );
        assert!(matches(r"^[\w-.]+$", "a-."));
        assert!(!matches(r"^[\s-x]$", "m"), "not a range from space to x");
        assert!(matches(r"^[\s-x]$", "-"));
        assert!(!matches(r"^[\w-z]$", "`"));
        assert!(matches(r"^\<div\>$", "<div>"));
        assert!(matches(r"^[\<]$", "<"));
        assert!(matches(r"^\p{^Greek}$", "a"));
        assert!(!matches(r"^\p{^Greek}$", "α"));
        assert!(matches(r"^\P{^Greek}$", "α"));
        assert!(matches(r"^a{01}$", "a{01}"));
        assert!(matches(r"^a{1,02}$", "a{1,02}"));
        assert!(matches!(
            translate(r"\18"),
            Err(GoRegexError::Backreference('1'))
        ));
        assert!(matches!(translate("(?x)a b"), Err(GoRegexError::Flag('x'))));
        assert!(matches(r"(?i)^A$", "a"));
        assert!(matches(r"(?s:.)", "\n"));
        assert!(matches(r"(?P<n>a)(?:b)(?<m>c)", "abc"));
    }

    /// Guarantees: in a class, `[`, `&&`, `--` and `~~` are literals, POSIX classes work.
    #[test]
    fn class_literals_and_posix_classes() {
        assert!(matches(r"^[[]$", "["));
        assert!(matches(r"^[a&&b]$", "&"));
        assert!(matches(r"^[~~]$", "~"));
        assert!(matches(r"^[+--]$", ","), "a range from + to -");
        assert!(matches(r"^[]a]$", "]"));
        assert!(matches(r"^[^]a]$", "b"));
        assert!(matches(r"^[[:alpha:]]+$", "abc"));
        assert!(!matches(r"^[[:alpha:]]$", "é"));
        assert!(matches(r"^[[:^digit:]]$", "x"));
    }

    /// Guarantees: what the two syntaxes share goes through unchanged.
    #[test]
    fn common_patterns_are_unchanged() {
        for p in [
            r"^GET /api/v[0-9]+/.*$",
            r"(?i)error|fail(ed|ure)",
            r"^\x41\x{263a}\.\*\\$",
            r"(?P<name>a+)|(?:b)",
            r"^[^\n]*$",
            r"\pL\p{Greek}",
        ] {
            assert_eq!(translate(p).unwrap(), p);
        }
        assert!(matches!(
            bytes_regex("(unclosed"),
            Err(GoRegexError::Regex(_))
        ));
    }
}
