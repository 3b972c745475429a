//! YAML configuration loading shared by the binaries. Errors name the file, and the YAML
//! parser's message names the key path and line (`policies[2]: missing field
//! `threshold_ms` at line 7 column 5`), so a user can go straight to the mistake.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A list of strings as the Collector decodes one (mapstructure's `StringToSliceHookFunc`
/// in its config decoder): a sequence, or a single string split at every `,` (`ERROR` is
/// `[ERROR]`, `a,b` is `[a, b]`, as a `${env:…}` holding `a,b` gives; an empty string is
/// an empty list). For `#[serde(deserialize_with = "…")]` on `Vec<String>` fields that
/// take Collector keys.
pub fn comma_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct CommaList;
    impl<'de> serde::de::Visitor<'de> for CommaList {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of strings, or one string with the items separated by commas")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(if v.is_empty() {
                Vec::new()
            } else {
                v.split(',').map(str::to_owned).collect()
            })
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_any(CommaList)
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The YAML is malformed or does not fit the schema.
    #[error("{}: {}", path.display(), readable(&error.to_string()))]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error, with key path and line.
        error: serde_yaml_ng::Error,
    },
    /// A value is not usable, at a known line.
    #[error("{}:{line}: {key}: {message}", path.display())]
    InvalidAt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The key path, as in `policies[2]`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The values parse but are not usable together.
    #[error("{}: {key}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key path, as in `members.static[1]`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// A serde message in the words of a config file: the names of Tailgate's structs
/// (`expected struct AndConfig`) and Rust's number types (`expected f64`) become what the
/// file should hold there, and serde's "unit value" (an empty value) says where one
/// usually comes from.
pub fn readable(message: &str) -> String {
    let mut out = readable_without_suggestion(message);
    if let Some(hint) = unknown_field_hint(&out) {
        out.push_str(&hint);
    }
    out
}

/// [`readable`] without its "did you mean" for an unknown key, for a reader that words
/// its own (the policy file's).
pub fn readable_without_suggestion(message: &str) -> String {
    // The whole document (serde names no key before it).
    if message.starts_with("invalid type: sequence, expected struct RawPolicyFile") {
        return message.replace(
            "invalid type: sequence, expected struct RawPolicyFile",
            "the document is a list; a policy file is a mapping: put the list under `policies:`",
        );
    }
    let mut out = message
        .replace(
            "invalid type: unit value",
            "an empty value (null, or an unset ${env:…} variable)",
        )
        // Quoted, an unset variable is an empty string (`num_traces: "${env:N}"`).
        .replace(
            "invalid type: string \"\"",
            "an empty string (\"\", or an unset ${env:…} variable in quotes)",
        );
    // An integer past 2^64 or below -2^63 (serde's YAML reads it as a u128 or an i128,
    // which its own value type cannot hold): no setting takes one.
    if let Some(at) = out.find("invalid type: integer `") {
        let rest = &out[at + "invalid type: integer `".len()..];
        let parts = rest
            .split_once("` as u128, expected any YAML value")
            .or_else(|| rest.split_once("` as i128, expected any YAML value"));
        if let Some((digits, tail)) = parts {
            out = format!("{}{digits} is out of range{tail}", &out[..at]);
        }
    }
    while let Some(at) = out.find("expected struct ") {
        let name_start = at + "expected struct ".len();
        let name_end = out[name_start..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(out.len(), |n| name_start + n);
        out.replace_range(at..name_end, "expected a mapping of settings (key: value)");
    }
    for (rust, words) in [
        ("f64", "a number"),
        ("f32", "a number"),
        ("i64", "an integer"),
        ("i32", "an integer"),
        ("u64", "a whole number (0 or more)"),
        ("u32", "a whole number (0 or more)"),
        ("u16", "a whole number (0 to 65535)"),
        ("u8", "a whole number (0 to 255)"),
        ("usize", "a whole number (0 or more)"),
    ] {
        for end in [" ", ",", ")", ""] {
            let from = format!("expected {rust}{end}");
            if end.is_empty() {
                if out.ends_with(&from) {
                    let at = out.len() - from.len();
                    out.replace_range(at.., &format!("expected {words}"));
                }
            } else {
                out = out.replace(&from, &format!("expected {words}{end}"));
            }
        }
    }
    // A Collector section name where Tailgate's own key has another: say how it maps.
    for (collector, ours, how) in [
        (
            "exporters",
            "export",
            "a Collector config's exporters: go under Tailgate's export:, each block as the Collector writes it",
        ),
        (
            "receivers",
            "receive",
            "a Collector config's receivers.otlp.protocols.grpc.endpoint is Tailgate's receive.grpc: HOST:PORT, and http.endpoint receive.http: HOST:PORT",
        ),
        (
            "processors",
            "buffer",
            "a Collector config's processors are not the gateway config's: its tail_sampling block (or the whole Collector config) is the --policies file",
        ),
    ] {
        if out.contains(&format!("unknown field `{collector}`"))
            && out.contains(&format!("`{ours}`"))
        {
            out.push_str(&format!(" ({how})"));
        }
    }
    out
}

/// Keys of the Collector's components that Tailgate names otherwise, where the known key
/// is not within a typo of them: the `loadbalancing` exporter's `resolver.dns.hostname`
/// and `resolver` are the router's `members.dns.name` and `members`.
const COLLECTOR_KEYS: &[(&str, &str)] = &[("hostname", "name"), ("resolver", "members")];

/// For serde's "unknown field `x`, expected one of `a`, `b`": " (did you mean `a`?)" when
/// a known key is the Collector's name for it or within a typo of it (two edits, or a
/// third of its length).
fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    let (field, rest) = rest.split_once('`')?;
    if ["exporters", "receivers", "processors"].contains(&field) {
        // Sections of a Collector config: `readable` says how each maps.
        return None;
    }
    let known: Vec<&str> = rest
        .split("expected ")
        .nth(1)?
        .split('`')
        .skip(1)
        .step_by(2)
        .collect();
    let pick = COLLECTOR_KEYS
        .iter()
        .find(|(theirs, ours)| *theirs == field && known.contains(ours))
        .map(|(_, ours)| *ours)
        .or_else(|| near_key(field, known))?;
    Some(format!(" (did you mean `{pick}`?)"))
}

/// The key of `known` most likely meant by `field`: within two edits, and at most one
/// edit per four characters of `field` (so `foo` suggests nothing).
pub fn near_key<'a>(field: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (edit_distance(k, field), k))
        .filter(|(d, _)| *d <= 2 && d * 4 <= field.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance by characters, for suggestions on short keys.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Whether config text is a whole OpenTelemetry Collector config (two of `receivers`,
/// `exporters` and `service` at the top): the binaries read such a file for their own
/// sections (`tailgate_core::collector`), and name it when it is not one they read.
pub fn is_collector_config(text: &str) -> bool {
    let sections = ["receivers", "exporters", "service"];
    match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        Ok(top) => sections.iter().filter(|k| top.get(**k).is_some()).count() >= 2,
        // A file the parser refuses further in (a key written twice, say) is still known
        // by its top-level keys, so that its error is read as a Collector config's.
        Err(_) => {
            sections
                .iter()
                .filter(|k| text.lines().any(|l| is_key_line(l, k)))
                .count()
                >= 2
        }
    }
}

/// The most a config file, a policy file, a file a `${file:…}` reference names, or a
/// certificate, key or token file may hold. Reads stop past it: `${file:/dev/zero}` (or a
/// path to a disk image by mistake) took 6.9 GB in 30 s before, and would have taken the
/// process down. A policy file of 100,000 values is a few MiB.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// The bytes of `path`, refused past [`MAX_FILE_BYTES`] (an `InvalidData` error saying so)
/// rather than read without end: for files read at start. A file read again while the
/// process runs goes through [`read_regular`].
pub fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    read_at_most(std::fs::File::open(path)?)
}

/// [`read_bounded`] for a file read again while the process runs (a policy file, a
/// certificate or key): opened without blocking and refused unless it is a regular file
/// (symbolic links followed, as Kubernetes mounts them). A named pipe moved in place of a
/// policy file or certificate froze a whole gateway: its open waited for a writer on a
/// runtime thread, and the other threads waited on that one (a hostile check).
pub fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    // The type of what was opened (fstat), not of what the path names a moment later.
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a named pipe, a socket or a device): a file read again while the process runs must be one, as reading a pipe waits for a writer",
        ));
    }
    read_at_most(file)
}

/// At most [`MAX_FILE_BYTES`] of `file`, or an error saying it holds more.
fn read_at_most(file: std::fs::File) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "larger than {} MiB, the most a config, policy, certificate or referenced file may hold",
                MAX_FILE_BYTES >> 20
            ),
        ));
    }
    Ok(bytes)
}

/// [`read_bounded`] as text: `std::fs::read_to_string` with the bound, without a leading
/// UTF-8 byte-order mark (editors on Windows write one; YAML readers, the Collector's
/// among them, skip it, where the line-based readings here took it for part of the first
/// key).
pub fn read_text(path: &Path) -> std::io::Result<String> {
    let mut text = utf8(read_bounded(path)?)?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    Ok(text)
}

/// `bytes` as text, or `read_to_string`'s error.
fn utf8(bytes: Vec<u8>) -> std::io::Result<String> {
    String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// Deserializes and validates a binary's own config file from `text`, the file as read
/// once (a second read of `--config <(envsubst < f)` finds the pipe empty): a whole
/// Collector config given in its place is refused with `collector_hint` (what to pass
/// instead), and `validate`'s errors, found on parsed values that carry no position,
/// get the line of their key from the text.
pub fn load_checked<T: DeserializeOwned>(
    path: &Path,
    text: &str,
    collector_hint: &str,
    validate: impl FnOnce(&T) -> Result<(), ConfigError>,
) -> Result<T, ConfigError> {
    let config: T = parse_yaml(path, text).map_err(|e| match e {
        ConfigError::Parse { .. } | ConfigError::InvalidAt { .. } if is_collector_config(text) => {
            ConfigError::Invalid {
                path: path.to_owned(),
                key: "(top level)".into(),
                message: collector_hint.to_owned(),
            }
        }
        e => e,
    })?;
    validate(&config).map_err(|e| with_line(e, text))?;
    Ok(config)
}

/// Deserializes YAML text; `path` is only used in errors. An empty document is read as an
/// empty mapping, so that every key takes its default. The text is first read as the
/// Collector reads its configs (see [`collector_text`]), with values from the process
/// environment and files.
pub fn parse_yaml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    // Warnings about references name the file.
    let _file = tracing::warn_span!("config", file = %path.display()).entered();
    let text = collector_text(path, text, &system_source)?;
    parse_plain_yaml(path, &text)
}

/// Deserializes YAML text as it is, without substitutions.
pub fn parse_plain_yaml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    if let Some(&(line, _)) = later_documents(text).first() {
        // serde's message names no line ("more than one document is not supported").
        return Err(ConfigError::InvalidAt {
            path: path.to_owned(),
            line,
            key: "---".into(),
            message: "a second YAML document starts here; this file must hold one (the Collector would read only the first): keep the one that is this file's in a file of its own".into(),
        });
    }
    // A key written twice in a mapping read into a map (exporter `headers:`, say) is taken
    // by serde with the last value, silently, and one read by a visitor of its own (the
    // exporters, the extensions) was refused at the first writing's line; the Collector
    // refuses the file. A plain reading first finds it, placed at the second writing's line
    // (or where the parser says when it cannot be).
    if let Err(error) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        if error.to_string().contains("duplicate entry") {
            return Err(
                duplicate_key(path, &error, text).unwrap_or(ConfigError::Parse {
                    path: path.to_owned(),
                    error,
                }),
            );
        }
    }
    let read: T =
        serde_yaml_ng::from_str(text).map_err(|error| match tab_indented(&error, text) {
            Some(line) => ConfigError::InvalidAt {
                path: path.to_owned(),
                line,
                key: "(indentation)".into(),
                message: "this line is indented with a tab; YAML indents with spaces only".into(),
            },
            None => match (
                duplicate_key(path, &error, text)
                    .or_else(|| sub_key_error(path, &error, text))
                    .or_else(|| missing_key_error(path, &error, text)),
                unknown_top_key_line(&error, text),
            ) {
                (Some(located), _) => located,
                // serde_yaml gives no position for the document's first key, nor for a top-level
                // key written twice: found by its name.
                (None, Some((line, key))) => ConfigError::InvalidAt {
                    path: path.to_owned(),
                    line,
                    key,
                    message: readable(&error.to_string()),
                },
                (None, None) => ConfigError::Parse {
                    path: path.to_owned(),
                    error,
                },
            },
        })?;
    Ok(read)
}

/// The dotted path of the key written on `line` (1-based) of a YAML text in block style
/// (`receivers.otlp.protocols.grpc.endpoint`); `None` when that line or one of its parents
/// is a sequence item or a flow mapping, or writes no key.
pub fn path_of_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let key_of = |l: &str| -> Option<String> {
        let t = l.trim_start();
        if t.starts_with('-') || t.starts_with('#') || t.starts_with('{') {
            return None;
        }
        let (k, _) = t.split_once(':')?;
        let k = k.trim().trim_matches(|c| c == '"' || c == '\'');
        (!k.is_empty() && !k.contains(['{', '[', ' '])).then(|| k.to_owned())
    };
    let at = lines.get(line.checked_sub(1)?)?;
    let mut parts = vec![key_of(at)?];
    let mut indent = at.len() - at.trim_start().len();
    for l in lines[..line - 1].iter().rev() {
        if indent == 0 {
            break;
        }
        let i = l.len() - l.trim_start().len();
        if l.trim().is_empty() || l.trim_start().starts_with('#') || i >= indent {
            continue;
        }
        // A parent whose value is a block scalar (`key: |`): the line is its text.
        if block_opener_column(l).is_some() {
            return None;
        }
        parts.push(key_of(l)?);
        indent = i;
    }
    parts.reverse();
    Some(parts.join("."))
}

/// A check's message that names its key below the value it was raised on, in the
/// Collector's words (`sending_queue: \`queue_size\` must be positive`,
/// `sending_queue.batch: \`flush_timeout\` must be positive, found 0`): that key
/// (`sending_queue.queue_size`) and the message from the backtick on, so that the error
/// names the key and its line rather than the block the check ran on.
pub fn named_sub_key(message: &str) -> Option<(String, &str)> {
    let (sub, tail) = message.split_once(": ")?;
    let is_path = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.".contains(&b))
    };
    let leaf = tail.strip_prefix('`')?.split_once('`')?.0;
    (is_path(sub) && is_path(leaf)).then(|| (format!("{sub}.{leaf}"), tail))
}

/// A parser's message without the position it ends with (` at line 4 column 29`), for an
/// error that names its line itself.
pub fn without_position(message: &str) -> &str {
    match message.rsplit_once(" at line ") {
        Some((before, after)) if after.starts_with(|c: char| c.is_ascii_digit()) => before,
        _ => message,
    }
}

/// What a missing required key's error says, wherever it is placed.
pub fn required_here(field: &str) -> String {
    format!("`{field}` is required here, and not written")
}

/// A schema error whose message names a key below where it was raised
/// ([`named_sub_key`]), placed at that key's line; serde gives the position it reached.
fn sub_key_error(path: &Path, error: &serde_yaml_ng::Error, text: &str) -> Option<ConfigError> {
    let full = error.to_string();
    let message = without_position(&full);
    let (at, rest) = message.split_once(": ")?;
    if at.contains([' ', '`']) {
        return None;
    }
    let (sub, tail) = named_sub_key(rest)?;
    let key = format!("{at}.{sub}");
    let line = locate_key(text, &key)?;
    Some(ConfigError::InvalidAt {
        path: path.to_owned(),
        line,
        key: written_path(text, line, &key).unwrap_or(key),
        message: tail.to_owned(),
    })
}

/// A required key left out (`export.otlp: missing field `endpoint``), placed at the line
/// of the block that lacks it: serde gives the position it reached, the block's first
/// child or, for a key of the whole file, a line past its end (a file of comments only).
pub fn missing_key_error(
    path: &Path,
    error: &serde_yaml_ng::Error,
    text: &str,
) -> Option<ConfigError> {
    let full = error.to_string();
    let message = without_position(&full);
    let (at, field) = match message.split_once(": missing field `") {
        Some((at, rest)) if !at.contains([' ', '`']) => (Some(at), rest),
        Some(_) => return None,
        None => (None, message.strip_prefix("missing field `")?),
    };
    let field = field.strip_suffix('`')?;
    let Some(at) = at else {
        let empty = text.lines().map(str::trim).all(|l| {
            l.is_empty() || l.starts_with('#') || matches!(l, "---" | "..." | "~" | "null" | "{}")
        });
        return Some(ConfigError::Invalid {
            path: path.to_owned(),
            key: field.to_owned(),
            message: if empty {
                "required, and the file holds no settings (only comments, or nothing)".into()
            } else {
                "required at the top level of the file, and not written".into()
            },
        });
    };
    Some(ConfigError::InvalidAt {
        path: path.to_owned(),
        line: locate_key(text, at)?,
        key: at.to_owned(),
        message: required_here(field),
    })
}

/// Where each YAML document after the first starts in `text`: its `---` line (1-based) and
/// byte offset. A `---` before any content or other marker opens the first document and is
/// not counted (a marker right after a marker is: the document between is empty); a
/// marker is at the start of a line (inside a block scalar or a quoted string a line
/// starting with `---` is not allowed in YAML, so no context is tracked).
pub fn later_documents(text: &str) -> Vec<(usize, usize)> {
    let mut starts = Vec::new();
    let mut content = false;
    let mut opened = false;
    let mut offset = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let body = line.trim_end_matches(['\n', '\r']);
        let marker = body
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']));
        if marker {
            if content || opened {
                starts.push((n + 1, offset));
            }
            opened = true;
            // What follows the marker on its line is the new document's.
            content = !body[3..].trim().is_empty() && !body[3..].trim_start().starts_with('#');
        } else {
            // Blank lines, comments, a directive before content and an end marker are not
            // a document's content.
            let directive = body.starts_with('%') && !content;
            let blank = body.trim().is_empty() || body.trim_start().starts_with('#');
            content |= !blank && !directive && body != "...";
        }
        offset += line.len();
    }
    starts
}

/// For an "unknown field" error whose message gives no position (the parser names none
/// for the document's first key), or a "duplicate field" one (none for a top-level key
/// written twice): the line of that key (its second, for a duplicate) at the top level,
/// and the key.
fn unknown_top_key_line(error: &serde_yaml_ng::Error, text: &str) -> Option<(usize, String)> {
    let message = error.to_string();
    if message.contains(" at line ") {
        return None;
    }
    if let Some(rest) = message.strip_prefix("duplicate field `") {
        // Nor for a top-level key written twice: the second one, at the start of a line.
        let name = rest.split('`').next()?;
        let (at, _) = text
            .lines()
            .enumerate()
            .filter(|(_, l)| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.trim_start().starts_with(':'))
            })
            .nth(1)?;
        return Some((at + 1, name.to_owned()));
    }
    let name = message.strip_prefix("unknown field `")?.split('`').next()?;
    Some((locate_key(text, name)?, name.to_owned()))
}

/// A key written twice in one mapping below the top level: the parser names the key and
/// where the mapping starts; this finds the second writing's line (and the first's), so
/// that the error points at the line to remove. `None` for other errors, or when the
/// text is not laid out as block mappings (a flow mapping keeps the parser's words).
pub fn duplicate_key(path: &Path, error: &serde_yaml_ng::Error, text: &str) -> Option<ConfigError> {
    let message = error.to_string();
    let (before, name) = if let Some((before, rest)) = message.split_once("duplicate field `") {
        (before, rest.split('`').next()?)
    } else {
        let (before, rest) = message.split_once("duplicate entry with key \"")?;
        (before, rest.split('"').next()?)
    };
    let location = error.location()?;
    let (start, column) = (
        location.line().checked_sub(1)?,
        location.column().checked_sub(1)?,
    );
    let lines: Vec<&str> = text.lines().collect();
    let mut seen = Vec::new();
    for (n, line) in lines.iter().enumerate().skip(start) {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let indent = line.len() - t.len();
        let at_key = if n == start {
            line.get(column..)
        } else if indent < column {
            break;
        } else if indent == column {
            Some(t)
        } else {
            None
        };
        if at_key.is_some_and(|k| is_key_line(k, name)) {
            seen.push(n + 1);
        }
    }
    if seen.len() < 2 {
        seen = flow_keys(&lines, start, column, name);
    }
    let [first, second, ..] = seen[..] else {
        return None;
    };
    let prefix = before.trim_end_matches(": ").trim();
    Some(ConfigError::InvalidAt {
        path: path.to_owned(),
        line: second,
        key: if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}.{name}")
        },
        message: format!(
            "written twice in one mapping (first at line {first}): YAML keys are unique, keep one (the Collector refuses this too)"
        ),
    })
}

/// The 1-based lines where `name` is written as a key of the flow mapping opening at
/// `lines[start]`, column `column` (`{a: 1,` then `a: 2}` on another line, as the Collector
/// README writes policies): its keys at its own depth, after `{` or `,`, quoted strings
/// skipped. Empty when no flow mapping opens there.
fn flow_keys(lines: &[&str], start: usize, column: usize, name: &str) -> Vec<usize> {
    let mut seen = Vec::new();
    let mut depth = 0usize;
    let mut expect_key = false;
    for (n, line) in lines.iter().enumerate().skip(start) {
        let text = if n == start {
            match line.get(column..) {
                Some(t) if t.starts_with('{') => t,
                _ => return seen,
            }
        } else {
            line
        };
        let mut quote: Option<char> = None;
        let mut quoted = String::new();
        for (i, c) in text.char_indices() {
            if let Some(q) = quote {
                if c == q {
                    // A quoted key is compared without its quotes.
                    if expect_key && depth == 1 && quoted == name {
                        seen.push(n + 1);
                    }
                    expect_key = false;
                    quote = None;
                } else {
                    quoted.push(c);
                }
                continue;
            }
            match c {
                '#' if i == 0 || text[..i].ends_with(char::is_whitespace) => break,
                '"' | '\'' => {
                    quote = Some(c);
                    quoted.clear();
                }
                '{' | '[' => {
                    depth += 1;
                    expect_key = c == '{' && depth == 1;
                }
                '}' | ']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return seen;
                    }
                }
                ',' => expect_key = depth == 1,
                c if c.is_whitespace() => {}
                _ => {
                    if expect_key && depth == 1 && is_key_line(&text[i..], name) {
                        seen.push(n + 1);
                    }
                    expect_key = false;
                }
            }
        }
    }
    seen
}

/// The line of a parse error when that line is indented with a tab, which YAML forbids
/// in block context and the parser reports as "found character that cannot start any
/// token" or "found a tab character that violates indentation" (inside `{…}` a tab is
/// allowed, and another error there keeps its words).
fn tab_indented(error: &serde_yaml_ng::Error, text: &str) -> Option<usize> {
    let message = error.to_string();
    if !message.contains("cannot start any token") && !message.contains("tab character") {
        return None;
    }
    let line = error.location()?.line();
    let indent = text.lines().nth(line.checked_sub(1)?)?;
    indent
        .chars()
        .take_while(|c| c.is_whitespace())
        .any(|c| c == '\t')
        .then_some(line)
}

/// Where `${scheme:name}` references are resolved: `(scheme, name)` → the value, `None` for
/// an unset variable, or an error message.
pub type Source<'a> = dyn Fn(&str, &str) -> Result<Option<String>, String> + 'a;

/// The process environment (`env`) and the file system (`file`), as the Collector's
/// default providers.
pub fn system_source(scheme: &str, name: &str) -> Result<Option<String>, String> {
    match scheme {
        "env" => Ok(std::env::var(name).ok()),
        // One trailing line break is dropped: Secret files written by `echo` or editors
        // end with one, and a token or header value must not.
        // A policy file's references are read again at each reload: a regular file only.
        "file" => read_regular(Path::new(name))
            .and_then(utf8)
            .map(|mut s| {
                if s.ends_with('\n') {
                    s.pop();
                    if s.ends_with('\r') {
                        s.pop();
                    }
                }
                Some(s)
            })
            .map_err(|e| format!("cannot read {name}: {e}")),
        "http" | "https" => Err(format!(
            "${{{scheme}:…}} fetches config over the network at start, which Tailgate does not do: write the value here, or use ${{file:PATH}} or ${{env:NAME}}"
        )),
        other => Err(format!(
            "unsupported scheme {other:?} in ${{{other}:{name}}}; use env, file or yaml"
        )),
    }
}

/// Config text as the Collector reads it: `${env:NAME}`, `${NAME}` and
/// `${env:NAME:-default}` are replaced by the variable's value (an unset variable by its
/// default, or by nothing, as the Collector does); `${file:PATH}` by the file's content
/// without its final line break (a departure: the Collector keeps it);
/// `$$` stands for one `$`. Integers written with digit separators (`100_000`, as the
/// Collector's docs write them and Go's YAML reads them) become plain integers. A value is
/// written so that YAML reads it as its text (quoted or escaped where it sits, see
/// `write_value`), so line numbers are unchanged.
pub fn collector_text(path: &Path, text: &str, source: &Source<'_>) -> Result<String, ConfigError> {
    let expanded = collector_text_lenient(text, source);
    expanded.warn(|_| true);
    match expanded.failures.into_iter().next() {
        Some((line, message)) => Err(reference_error(path, text, line, message)),
        None => merge_keys(path, expanded.text),
    }
}

/// The text with YAML merge keys (`<<: *anchor`) applied, as Go's YAML (which the
/// Collector reads its configs with) applies them; text without one is returned as it is.
/// serde applies them only to an untyped document, so a file that uses them is read once
/// untyped, merged and written out again: line numbers in later errors then count lines of
/// that merged document, not of the file (docs/configuration.md says so).
pub fn merge_keys(path: &Path, text: String) -> Result<String, ConfigError> {
    fn has_merge(v: &serde_yaml_ng::Value) -> bool {
        match v {
            serde_yaml_ng::Value::Mapping(m) => m
                .iter()
                .any(|(k, v)| k.as_str() == Some("<<") || has_merge(v)),
            serde_yaml_ng::Value::Sequence(s) => s.iter().any(has_merge),
            serde_yaml_ng::Value::Tagged(t) => has_merge(&t.value),
            _ => false,
        }
    }
    if !text.contains("<<") {
        return Ok(text);
    }
    let parse = |error| ConfigError::Parse {
        path: path.to_owned(),
        error,
    };
    let Ok(mut value) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text) else {
        // Not YAML: the typed parse reports where.
        return Ok(text);
    };
    if !has_merge(&value) {
        return Ok(text);
    }
    // serde's YAML says what is wrong with a merge but not where: the first merge key
    // whose value is not a mapping or a list of mappings (aliases already resolved) is it.
    fn bad_merge(v: &serde_yaml_ng::Value, path: String) -> Option<String> {
        use serde_yaml_ng::Value;
        let join = |key: &str| {
            if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            }
        };
        match v {
            Value::Mapping(m) => m.iter().find_map(|(k, v)| {
                let key = k.as_str().map(str::to_owned).unwrap_or_default();
                let merges = matches!(v, Value::Mapping(_))
                    || v.as_sequence()
                        .is_some_and(|s| s.iter().all(Value::is_mapping));
                if key == "<<" && !merges {
                    Some(join("<<"))
                } else {
                    bad_merge(v, join(&key))
                }
            }),
            Value::Sequence(s) => s
                .iter()
                .enumerate()
                .find_map(|(i, v)| bad_merge(v, format!("{path}[{i}]"))),
            Value::Tagged(t) => bad_merge(&t.value, path),
            _ => None,
        }
    }
    let misplaced = bad_merge(&value, String::new());
    if let Err(error) = value.apply_merge() {
        let line = misplaced.as_deref().and_then(|key| locate_key(&text, key));
        return Err(match (misplaced, line) {
            (Some(key), Some(line)) => ConfigError::InvalidAt {
                path: path.to_owned(),
                line,
                key,
                message: error.to_string(),
            },
            _ => parse(error),
        });
    }
    serde_yaml_ng::to_string(&value).map_err(parse)
}

/// [`collector_text`], leaving a reference that cannot be resolved as written and
/// returning `(line, message)` for each, and the warnings unlogged, for callers that use
/// only part of the file (a whole Collector config, whose other sections may name files
/// that exist only where the Collector runs, and variables set only where it runs).
pub fn collector_text_lenient(text: &str, source: &Source<'_>) -> Expanded {
    // Numbers are read as written in the file, before values are pasted in: a pasted
    // value is text, and a string key must get it as it is (`x-tenant: ${env:T}` with
    // T=12e4 is "12e4", as in the Collector).
    expand_collect(&plain_integers(text), source)
}

/// The error for a reference that could not be resolved.
pub fn reference_error(path: &Path, text: &str, line: usize, message: String) -> ConfigError {
    ConfigError::InvalidAt {
        path: path.to_owned(),
        line,
        // The key the reference is the value of, when the line writes one in block style.
        key: path_of_line(text, line).unwrap_or_else(|| "${…}".into()),
        message,
    }
}

/// Expands `${…}` references; errors carry the 1-based line. Whole-line comments are left
/// as they are.
pub fn expand(text: &str, source: &Source<'_>) -> Result<String, (usize, String)> {
    let expanded = expand_collect(text, source);
    expanded.warn(|_| true);
    match expanded.failures.into_iter().next() {
        Some(f) => Err(f),
        None => Ok(expanded.text),
    }
}

/// Lines of a file with something said of each: (line number, what).
type ByLine = Vec<(usize, String)>;

/// What expanding a file's references found worth a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// `${env:NAME}` of an unset variable without a default: it reads as nothing.
    Unset(String),
    /// A reference inside a longer unquoted value (`Bearer ${env:TOKEN}`).
    Embedded(String),
    /// A shell-style `$NAME` of a variable the environment has: not expanded.
    Bare(String),
}

/// A file's text with its references expanded.
#[derive(Debug)]
pub struct Expanded {
    /// The text, each reference that could not be resolved left as written.
    pub text: String,
    /// The lines whose references could not be resolved, with why.
    pub failures: ByLine,
    /// What is worth a warning, by line, every occurrence.
    pub notices: Vec<(usize, Notice)>,
}

impl Expanded {
    /// Logs the notices on the lines `read` says are read (a whole Collector config's
    /// other sections are not), each variable or reference once, at its first such line.
    pub fn warn(&self, read: impl Fn(usize) -> bool) {
        warn_notices(&self.notices, read);
    }
}

/// Logs the `notices` on the lines `read` says are read, each variable or reference once,
/// at its first such line (see [`Expanded::warn`]).
pub fn warn_notices(notices: &[(usize, Notice)], read: impl Fn(usize) -> bool) {
    for (line, notice) in to_say(notices, read) {
        match notice {
            // As the Collector, which reads it as nothing too and warns.
            Notice::Unset(variable) => tracing::warn!(
                line,
                variable,
                "Configuration references an unset environment variable; it reads as nothing."
            ),
            // A later value with `#`, `: `, `,` or `&` (a rotated secret) would be
            // refused: say so while this one loads.
            Notice::Embedded(reference) => tracing::warn!(
                line,
                reference = %format!("${{{reference}}}"),
                "Configuration writes a reference inside a longer unquoted value: this value \
                 reads as meant, but one holding '#', ': ', ',' or '&' would be refused at \
                 start; put the whole value in double quotes."
            ),
            // Vendor examples still write `$NAME`; the Collector stopped expanding it.
            Notice::Bare(variable) => tracing::warn!(
                line,
                variable,
                "Configuration writes a shell-style $NAME, which is not expanded (as in the \
                     Collector since its confmap.unifyEnvVarExpansion gate went stable); write \
                     ${{env:NAME}} for the variable."
            ),
        }
    }
}

/// The notices [`warn_notices`] logs: those on lines `read` says are read, each once, at
/// its first such line.
fn to_say(notices: &[(usize, Notice)], read: impl Fn(usize) -> bool) -> Vec<&(usize, Notice)> {
    let mut said: Vec<&(usize, Notice)> = Vec::new();
    for n in notices.iter().filter(|(l, _)| read(*l)) {
        if !said.iter().any(|s| s.1 == n.1) {
            said.push(n);
        }
    }
    said
}

/// Whether what follows a reference is `:PORT` and the end of the value: the Collector
/// Helm chart's `${env:MY_POD_IP}:4317`, an address, which holds none of the characters
/// that would break the value; not worth a warning at every start.
fn port_follows(after: &str) -> bool {
    let value = after.split(" #").next().unwrap_or(after).trim_end();
    value
        .strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Expands `text`: the text, the lines that failed (with why), and what is worth a
/// warning (unlogged).
fn expand_collect(text: &str, source: &Source<'_>) -> Expanded {
    let mut out = String::with_capacity(text.len());
    let mut failures = Vec::new();
    let mut notices = Vec::new();
    for (
        n,
        YamlLine {
            line,
            in_block,
            start,
        },
    ) in yaml_lines(text).enumerate()
    {
        let continued = start.continues();
        let in_string = start.quoting != Quoting::Plain;
        if (!in_block && !continued && line.trim_start().starts_with('#')) || !line.contains('$') {
            out.push_str(line);
            continue;
        }
        let mut bare = Vec::new();
        let mut unset_here = Vec::new();
        let mut embedded_here = Vec::new();
        let expanded = expand_line(
            line,
            source,
            in_block,
            (continued, in_string),
            &mut unset_here,
            &mut bare,
            &mut embedded_here,
        );
        let here = unset_here.into_iter().map(Notice::Unset);
        let here = here.chain(embedded_here.into_iter().map(Notice::Embedded));
        notices.extend(
            here.chain(bare.into_iter().map(Notice::Bare))
                .map(|w| (n + 1, w)),
        );
        match expanded {
            Ok(l) if out.len() + l.len() > MAX_EXPANDED_BYTES => {
                // Each reference within its bound, the whole past it: stop here.
                failures.push((n + 1, expanded_too_far()));
                break;
            }
            Ok(l) => out.push_str(&l),
            Err(message) => {
                // Past the bound within the line: no further line is read either.
                let too_far = message == expanded_too_far();
                failures.push((n + 1, message));
                if too_far {
                    break;
                }
                out.push_str(line);
            }
        }
    }
    Expanded {
        text: out,
        failures,
        notices,
    }
}

/// The most a file may come to with its references (`${file:…}`, `${env:…}`) in place:
/// each file read is bounded ([`MAX_FILE_BYTES`]), and eight references to one 16 MiB
/// file took 811 MB to load before this bound (a hostile check).
pub const MAX_EXPANDED_BYTES: usize = 2 * MAX_FILE_BYTES as usize;

/// Why an expansion stopped at [`MAX_EXPANDED_BYTES`].
fn expanded_too_far() -> String {
    format!(
        "with its references in place the file comes to more than {} MiB, the most a config or policy file may",
        MAX_EXPANDED_BYTES >> 20
    )
}

/// A line of YAML text and where it stands: inside a block scalar's text (`key: |`), or
/// else in the context the lines before it leave open (a quoted string or flow
/// collection spanning lines).
struct YamlLine<'a> {
    line: &'a str,
    in_block: bool,
    start: Context,
}

/// The lines of `text` (with their line breaks), each with where it stands: what the
/// reference substitution and the number rewrite both need to leave strings alone.
fn yaml_lines(text: &str) -> impl Iterator<Item = YamlLine<'_>> {
    // The column of the node whose value is a block scalar, while in one.
    let mut block: Option<usize> = None;
    let mut carried = Context::new();
    text.split_inclusive('\n').map(move |line| {
        let indent = line.len() - line.trim_start().len();
        if block.is_some_and(|opener| !line.trim().is_empty() && indent <= opener) {
            block = None;
        }
        let in_block = block.is_some();
        let start = carried;
        if !in_block {
            block = block_opener_column(line);
            carried = Context {
                at_start: true,
                comment: false,
                ..carried.after(line)
            };
        }
        YamlLine {
            line,
            in_block,
            start,
        }
    })
}

/// When `line` ends with a block scalar's indicator (`key: |`, `- >-`, `k: &a !t |`): the
/// column of the node it is the value of (the key's, or the item's dash); the lines after
/// it that are more indented than that are its text.
pub(crate) fn block_opener_column(line: &str) -> Option<usize> {
    let content = match (line.find(" #"), line.find("\t#")) {
        (Some(a), Some(b)) => &line[..a.min(b)],
        (Some(i), None) | (None, Some(i)) => &line[..i],
        (None, None) => line,
    }
    .trim_end();
    let mut tokens: Vec<&str> = content.split_whitespace().collect();
    let indicator = tokens.pop()?;
    let is_indicator = indicator.starts_with(['|', '>'])
        && indicator[1..]
            .chars()
            .all(|c| matches!(c, '-' | '+' | '1'..='9'));
    if !is_indicator {
        return None;
    }
    // Node properties (an anchor, a tag) may stand between the key and the indicator.
    while tokens.last().is_some_and(|t| t.starts_with(['&', '!'])) {
        tokens.pop();
    }
    let indent = line.len() - line.trim_start().len();
    let mut column = indent;
    let mut rest = line.trim_start();
    let mut last_dash = None;
    while let Some(r) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("? ")) {
        last_dash = Some(column);
        let trimmed = r.trim_start();
        column += rest.len() - trimmed.len();
        rest = trimmed;
    }
    match tokens.last() {
        // `- |`: the item's dash.
        Some(&"-") | Some(&"?") => last_dash,
        // `key: |`: the key's column.
        Some(t) if t.ends_with(':') => Some(column),
        None => Some(indent),
        _ => None,
    }
}

/// Where on a line a reference sits: outside quotes (and how deep in flow collections), or
/// inside a single- or double-quoted YAML string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    Plain,
    Single,
    Double,
}

/// What the line's text so far says about the next character.
#[derive(Debug, Clone, Copy)]
struct Context {
    quoting: Quoting,
    /// Unclosed `[` and `{` outside quotes.
    flow: u32,
    /// Whether the next character starts a scalar (line start, or after `: `, `- `, `? `,
    /// or a flow indicator): only there does a quote open a quoted string.
    at_start: bool,
    escaped: bool,
    /// The line started inside a quoted string or flow collection of earlier lines: where
    /// it stands is not known from the line alone.
    continued: bool,
    /// A comment has started: the rest of the line is not YAML.
    comment: bool,
}

impl Context {
    fn new() -> Self {
        Context {
            quoting: Quoting::Plain,
            flow: 0,
            at_start: true,
            escaped: false,
            continued: false,
            comment: false,
        }
    }

    /// Whether a line starting in this context continues a quoted string or flow
    /// collection of earlier lines.
    fn continues(&self) -> bool {
        self.quoting != Quoting::Plain || self.flow > 0
    }

    /// The context after `literal` (text of the file, not substituted values).
    fn after(mut self, literal: &str) -> Self {
        if self.comment {
            return self;
        }
        let mut previous = ' ';
        let mut chars = literal.chars().peekable();
        while let Some(c) = chars.next() {
            match self.quoting {
                Quoting::Double => match c {
                    '\\' if !self.escaped => {
                        self.escaped = true;
                        previous = c;
                        continue;
                    }
                    '"' if !self.escaped => self.quoting = Quoting::Plain,
                    _ => {}
                },
                Quoting::Single => {
                    // `''` is a quote inside the string.
                    if c == '\'' && chars.next_if_eq(&'\'').is_none() {
                        self.quoting = Quoting::Plain;
                    }
                }
                Quoting::Plain => match c {
                    // A comment: nothing after it counts.
                    '#' if self.at_start || previous.is_whitespace() => {
                        self.comment = true;
                        return self;
                    }
                    '"' if self.at_start => self.quoting = Quoting::Double,
                    '\'' if self.at_start => self.quoting = Quoting::Single,
                    '[' | '{' if self.at_start || self.flow > 0 => {
                        self.flow += 1;
                        self.at_start = true;
                        previous = c;
                        continue;
                    }
                    ']' | '}' if self.flow > 0 => self.flow -= 1,
                    ',' if self.flow > 0 => {
                        self.at_start = true;
                        previous = c;
                        continue;
                    }
                    c if c.is_whitespace()
                        && (matches!(previous, ':' | '-' | '?') || self.at_start) =>
                    {
                        self.at_start = true;
                        previous = c;
                        continue;
                    }
                    _ => {}
                },
            }
            self.escaped = false;
            self.at_start = false;
            previous = c;
        }
        self
    }
}

/// Whether YAML reads `value`, written as a whole plain (unquoted) scalar, as exactly that
/// text (or as the number, boolean or null it spells, as the Collector types such values).
fn plain_safe(value: &str) -> bool {
    let starts_special = value.starts_with(|c: char| "&*!|>'\"%@`{}[],#?".contains(c))
        || value.starts_with("- ")
        || value == "-";
    !(starts_special
        || value.trim() != value
        || value.ends_with(':')
        || [" #", "\t#", ": "].iter().any(|p| value.contains(p))
        || value.contains(|c: char| (c.is_control() && c != '\t') || "{}[],".contains(c)))
}

/// Whether `value` reads as its own text wherever it is pasted unquoted: letters, digits and
/// `. _ / + = ~ ^ - :` (base64 secrets, URLs, durations, numbers), not starting with `-`,
/// `:` never followed by a space or ending it.
fn plain_anywhere(value: &str) -> bool {
    value
        .chars()
        .all(|c| c.is_alphanumeric() || "._/+=~^-:".contains(c))
        && !value.starts_with('-')
        && !value.ends_with(':')
}

/// Whether `before`, the line up to a reference, leaves it at the start of a whole block
/// value: indentation, then `- ` items, then at most one simple key and `: `.
fn whole_value_start(before: &str) -> bool {
    let mut t = before.trim_start();
    let mut item = false;
    while let Some(r) = t.strip_prefix("- ") {
        t = r.trim_start();
        item = true;
    }
    if t.is_empty() {
        return item;
    }
    let Some(key) = t.trim_end().strip_suffix(':') else {
        return false;
    };
    t.len() > t.trim_end().len() && !key.is_empty() && key.chars().all(plain_key_char)
}

/// A character of a plain key a reference may follow (`key: ${…}`).
fn plain_key_char(c: char) -> bool {
    c.is_alphanumeric() || "_-./".contains(c)
}

/// `value` as a double-quoted YAML string.
fn double_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes a resolved reference's `value` so that YAML reads it as that text, whatever it
/// holds (a secret starting with `&`, a value with ` #`, a PEM file's lines): inside quotes
/// escaped as the quotes need; as a whole plain value, as it is when it reads the same and
/// double-quoted otherwise; inside a longer plain value as it is, unless it would change
/// what YAML reads there (then an error: quote the whole value); in a block scalar as it
/// is, its later lines indented as the line. `before` is the line's text up to the
/// reference, `after` the rest.
fn write_value(
    out: &mut String,
    value: &str,
    ctx: Context,
    in_block: bool,
    before: &str,
    after: &str,
) -> Result<(), String> {
    if in_block {
        let indent = &before[..before.len() - before.trim_start().len()];
        out.push_str(&value.replace('\n', &format!("\n{indent}")));
        return Ok(());
    }
    if ctx.continued && !plain_anywhere(value) {
        return Err(
            "the reference is on a line that continues a quoted string or flow collection: put it on one line, in a double-quoted value or as the whole value of a key"
                .into(),
        );
    }
    match ctx.quoting {
        Quoting::Double => {
            let quoted = double_quoted(value);
            out.push_str(&quoted[1..quoted.len() - 1]);
        }
        Quoting::Single if value.contains(['\n', '\r']) => {
            return Err(
                "the value holds line breaks, which a single-quoted string cannot: use double quotes or none"
                    .into(),
            )
        }
        Quoting::Single => out.push_str(&value.replace('\'', "''")),
        // A whole value YAML would read as an id-like number of other text (`0x1F` as 31,
        // `007` as 7; see `retyped`) goes on to be quoted below, so that a string key
        // gets the text as set, as the Collector gives it (a number key then refuses the
        // text by name, where it would have taken the number).
        Quoting::Plain
            if plain_anywhere(value)
                && !(retyped(value)
                    && (whole_plain_value(ctx, before, after)
                        || whole_flow_value(ctx, before, after))) =>
        {
            out.push_str(value)
        }
        Quoting::Plain => {
            // Only where the value is certainly a whole plain value is it quoted; anywhere
            // else a guess could change what YAML reads, so it is refused.
            let whole_block = whole_plain_value(ctx, before, after);
            if whole_block || whole_flow_value(ctx, before, after) {
                if let Some(collection) = as_collection(value) {
                    out.push_str(&collection);
                    return Ok(());
                }
            }
            if whole_block {
                if plain_safe(value) && !retyped(value) {
                    out.push_str(value);
                } else {
                    out.push_str(&double_quoted(value));
                }
            } else if whole_flow_value(ctx, before, after) {
                // As a whole block value: as it is when YAML reads it as its text (a
                // number stays a number), else double-quoted.
                if plain_safe(value) && !retyped(value) {
                    out.push_str(value);
                } else {
                    out.push_str(&double_quoted(value));
                }
            } else {
                return Err(
                    "the value holds characters YAML may read specially here (such as '&', '#', ': ', ',' or a line break): put the reference in a double-quoted value, \"…${…}…\", or make it the whole value of a key"
                        .into(),
                );
            }
        }
    }
    Ok(())
}

/// A resolved value that is YAML for a list or a mapping written in flow style (`[a, b]`,
/// `{k: v}`) or over several lines (a file of `- name: …` items), written as one line of
/// JSON (flow YAML, so line numbers stay): a reference that is a whole unquoted value
/// then reads as that collection, as the Collector reads one (its providers give YAML).
/// `None` for anything else, written as text: a one-line `user: pass` stays a string
/// (the Collector keeps the text where a string is expected, which a secret is).
fn as_collection(value: &str) -> Option<String> {
    if !value.trim_start().starts_with(['[', '{']) && !value.trim().contains('\n') {
        return None;
    }
    match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(value) {
        Ok(v @ (serde_yaml_ng::Value::Sequence(_) | serde_yaml_ng::Value::Mapping(_))) => {
            serde_json::to_string(&v).ok()
        }
        _ => None,
    }
}

/// Whether a reference is the whole of a quoted value (`key: "${env:N}"`, `- '${env:N}'`,
/// `{k: "${env:N}"}`; `before` ends with its opening quote, `after` starts with its
/// closing one) and resolves to a number or a boolean. The Collector reads such a value
/// typed whatever its quotes: confmap expands a value that is exactly one reference to the
/// YAML it holds, keeping the text only for string fields. Written unquoted, it reads the
/// same way here: a number for a number, its text for a string.
fn quoted_whole_typed(
    ctx: Context,
    in_block: bool,
    before: &str,
    after: &str,
    value: &str,
) -> bool {
    let q = match ctx.quoting {
        Quoting::Double => '"',
        Quoting::Single => '\'',
        Quoting::Plain => return false,
    };
    if in_block || ctx.continued || !yaml_number_or_bool(value) {
        return false;
    }
    let (Some(open), Some(close)) = (before.strip_suffix(q), after.strip_prefix(q)) else {
        return false;
    };
    if ctx.flow > 0 {
        open.trim_end().ends_with([':', '[', ',', '{'])
            && close.trim_start().starts_with([',', '}', ']'])
    } else {
        whole_plain_value(ctx, open, close)
    }
}

/// Whether YAML reads `v` as a number (decimal int or float, no leading zeros) or a
/// boolean, and writes it back as the same text: a string key must still get exactly
/// the text (the Collector keeps it for string fields), and a file with merge keys is
/// read and written again before it is deserialized.
fn yaml_number_or_bool(v: &str) -> bool {
    if !yaml_number_or_bool_syntax(v) {
        return false;
    }
    match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(v) {
        Ok(parsed @ (serde_yaml_ng::Value::Number(_) | serde_yaml_ng::Value::Bool(_))) => {
            serde_yaml_ng::to_string(&parsed).is_ok_and(|text| text.trim_end() == v)
        }
        _ => false,
    }
}

/// Whether `v`, written plain, is a number whose text a string key would lose and a
/// number key is unlikely to want from a variable: digits with a leading zero (`007`, an
/// id), Go's prefixed integers (`0x1F`, `0o17`, `0b101`), or digits past 64 bits (which
/// no number key takes). Other forms YAML writes back otherwise (`+12`, `1e6`, `0.50`)
/// stay numbers, as `True` stays a boolean: a number key given one by a variable is the
/// likelier reading (a string key then gets `12`, `1000000`, `0.5`).
fn retyped(v: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = v.len() > 1 && v.starts_with('0') && digits(v);
    let prefixed = ["0x", "0X", "0o", "0O", "0b", "0B"].iter().any(|p| {
        v.strip_prefix(p)
            .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_hexdigit() || b == b'_'))
    });
    let past_64_bits = digits(v) && v.parse::<u64>().is_err();
    leading_zero || prefixed || past_64_bits
}

/// The shape of a decimal number or a boolean (see [`yaml_number_or_bool`]).
fn yaml_number_or_bool_syntax(v: &str) -> bool {
    if matches!(v, "true" | "false" | "True" | "False" | "TRUE" | "FALSE") {
        return true;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = v.strip_prefix(['-', '+']).unwrap_or(v);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['-', '+']).unwrap_or(e))),
        None => (unsigned, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((whole, frac)) => {
            (digits(whole) || whole.is_empty())
                && (digits(frac) || (frac.is_empty() && digits(whole)))
        }
        None => digits(mantissa) && (mantissa == "0" || !mantissa.starts_with('0')),
    };
    mantissa_ok && exponent.is_none_or(digits)
}

/// Whether a reference between `before` and `after` (the rest of its line) in plain text
/// is certainly a whole value: `key: ${…}` or `- ${…}` on one line, then nothing or a
/// comment, outside flow collections and continued lines.
fn whole_plain_value(ctx: Context, before: &str, after: &str) -> bool {
    ctx.flow == 0 && !ctx.continued && whole_value_start(before) && nothing_but_a_comment(after)
}

/// Whether a reference is the whole of a value inside a flow collection opened on its line
/// (`{ dsn: ${env:DSN} }`, `[a, ${env:B}]`): after `{`, `[` or `,`, or after `key: `
/// there, and followed by `,`, `}` or `]`. A double-quoted string there reads as the
/// value's text whatever it holds.
fn whole_flow_value(ctx: Context, before: &str, after: &str) -> bool {
    if ctx.flow == 0 || ctx.continued || !after.trim_start().starts_with([',', '}', ']']) {
        return false;
    }
    let b = before.trim_end();
    if b.ends_with(['{', '[', ',']) {
        return true;
    }
    let Some(k) = b.strip_suffix(':') else {
        return false;
    };
    let Some((_, key)) = k.rsplit_once(['{', ',']) else {
        return false;
    };
    let key = key.trim();
    before.len() > b.len() && !key.is_empty() && key.chars().all(plain_key_char)
}

/// Whether the rest of a line, after a value, holds nothing or only a comment (a `#` after
/// whitespace).
fn nothing_but_a_comment(after: &str) -> bool {
    let rest = after.trim_end_matches(['\n', '\r']);
    let trimmed = rest.trim_start();
    trimmed.is_empty() || (trimmed.starts_with('#') && rest.len() > trimmed.len())
}

/// Writes `${yaml:VALUE}` (the Collector's yaml provider: VALUE is YAML, read as what it
/// says, `[/a, /b]` a list) where it stands for the whole value of a key or item on one
/// line, the only place it can be written as it is without changing the lines around it.
fn write_yaml(
    out: &mut String,
    value: &str,
    ctx: Context,
    in_block: bool,
    before: &str,
    after: &str,
) -> Result<(), String> {
    if in_block || ctx.quoting != Quoting::Plain || !whole_plain_value(ctx, before, after) {
        return Err(
            "${yaml:…} is read only as the whole value of a key or list item (`key: ${yaml:[a, b]}`)"
                .into(),
        );
    }
    let alone = match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(value) {
        Ok(v) => v,
        Err(e) => return Err(format!("${{yaml:{value}}} is not YAML: {e}")),
    };
    // Pasted after a key it must read the same (`k: a: 1` does not: a block mapping
    // cannot be written on the key's line, nor a flow one, whose `}` ends the reference).
    let pasted = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&format!("k: {value}"))
        .ok()
        .and_then(|v| v.get("k").cloned());
    if pasted.as_ref() != Some(&alone) {
        return Err(format!(
            "${{yaml:{value}}} does not read the same as a value here: write a list or a scalar (a mapping cannot be written in a reference)"
        ));
    }
    out.push_str(value);
    Ok(())
}

/// Expands the references of one line (`in_block`: a line of a block scalar's text;
/// `continued`: a line that starts inside a quoted string or flow collection; `in_string`:
/// inside a quoted string).
fn expand_line(
    text: &str,
    source: &Source<'_>,
    in_block: bool,
    (continued, in_string): (bool, bool),
    unset: &mut Vec<String>,
    bare: &mut Vec<String>,
    embedded: &mut Vec<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut ctx = Context::new();
    ctx.continued = continued;
    while let Some(i) = rest.find('$') {
        ctx = ctx.after(&rest[..i]);
        if ctx.comment && !in_block {
            // The Collector resolves references in values only: a comment's are text.
            out.push_str(rest);
            return Ok(out);
        }
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            if after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                // Only a name the environment has: the rest of a secret after a `$`
                // (`Tr0ub$dor`) is not logged as a variable's name.
                let name = &after[..end];
                if matches!(source("env", name), Ok(Some(_))) {
                    bare.push(name.to_owned());
                }
            }
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = closing_brace(body) else {
            return Err("unterminated ${ reference".into());
        };
        // References inside this one first, as the Collector expands them
        // (`${env:A:-${env:B}}`, `${env:${env:NAME}}`).
        let inner;
        let reference = if body[..end].contains("${") {
            inner = resolve_inner(&body[..end], source, 1, unset)?;
            inner.as_str()
        } else {
            &body[..end]
        };
        let (scheme, name, default) = split_reference(reference)?;
        if scheme == "yaml" {
            let line_before = &text[..text.len() - rest.len() + i];
            write_yaml(&mut out, name, ctx, in_block, line_before, &body[end + 1..])?;
            ctx.at_start = false;
            rest = &body[end + 1..];
            continue;
        }
        let value = looked_up(scheme, name, default, source, unset)?;
        let value = value.as_str();
        let line_before = &text[..text.len() - rest.len() + i];
        if quoted_whole_typed(ctx, in_block, line_before, &body[end + 1..], value) {
            // `key: "${env:N}"` with N a number: written without its quotes.
            out.pop();
            out.push_str(value);
            ctx.quoting = Quoting::Plain;
            ctx.at_start = false;
            rest = &body[end + 2..];
            continue;
        }
        // A line that continues a flow collection (not a string) of earlier lines: a quoted
        // string opened on this line is known, and takes any value escaped.
        let known = Context {
            continued: ctx.continued && (in_string || ctx.quoting == Quoting::Plain),
            ..ctx
        };
        let after = &body[end + 1..];
        if !in_block
            && known.quoting == Quoting::Plain
            && plain_anywhere(value)
            && !whole_plain_value(known, line_before, after)
            && !whole_flow_value(known, line_before, after)
            && !port_follows(after)
            && !embedded.iter().any(|e| e == reference)
        {
            // Pasted inside a longer plain value, which reads as meant for this value only.
            embedded.push(reference.to_owned());
        }
        write_value(&mut out, value, known, in_block, line_before, after)?;
        if out.len() > MAX_EXPANDED_BYTES {
            return Err(expanded_too_far());
        }
        // What was written is a value: the next text is not at a scalar's start.
        ctx.at_start = false;
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Where the reference whose body starts `body` (after its `${`) ends: its `}`, past the
/// references nested in it.
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// A reference's scheme, name and (`env` only) default: `env:NAME:-default`, `file:/p`,
/// a bare `NAME` being `env`.
fn split_reference(reference: &str) -> Result<(&str, &str, Option<&str>), String> {
    let (scheme, name) = match reference.split_once(':') {
        Some((s, n)) if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()) => (s, n),
        _ => ("env", reference),
    };
    let (name, default) = match (scheme, name.split_once(":-")) {
        ("env", Some((n, d))) => (n, Some(d)),
        _ => (name, None),
    };
    if scheme == "env"
        && (name.is_empty()
            || name.starts_with(|c: char| c.is_ascii_digit())
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(format!(
            "invalid environment variable name {name:?} in ${{{reference}}}"
        ));
    }
    Ok((scheme, name, default))
}

/// The references nested in a reference's text resolved, innermost first, as the
/// Collector's confmap resolves them: what is left is the outer reference's text
/// (`env:A:-${env:B}` with B=x is `env:A:-x`). An unset variable without a default is
/// empty and named in `unset`, as at the top; `$$` is a `$`. `depth` counts the outer
/// reference: at most [`MAX_REFERENCE_DEPTH`] in all.
fn resolve_inner(
    text: &str,
    source: &Source<'_>,
    depth: usize,
    unset: &mut Vec<String>,
) -> Result<String, String> {
    if depth >= MAX_REFERENCE_DEPTH {
        return Err(format!(
            "references nested more than {MAX_REFERENCE_DEPTH} deep"
        ));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let end = closing_brace(body).ok_or("unterminated ${ reference")?;
        let inner;
        let reference = if body[..end].contains("${") {
            inner = resolve_inner(&body[..end], source, depth + 1, unset)?;
            inner.as_str()
        } else {
            &body[..end]
        };
        let (scheme, name, default) = split_reference(reference)?;
        if scheme == "yaml" {
            out.push_str(name);
        } else {
            out.push_str(&looked_up(scheme, name, default, source, unset)?);
        }
        if out.len() > MAX_EXPANDED_BYTES {
            return Err(expanded_too_far());
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A reference's value: the source's, else its default, else empty (the name then
/// noted in `unset`, once).
fn looked_up(
    scheme: &str,
    name: &str,
    default: Option<&str>,
    source: &Source<'_>,
    unset: &mut Vec<String>,
) -> Result<String, String> {
    let value = source(scheme, name)?;
    if value.is_none() && default.is_none() && !unset.iter().any(|u| u == name) {
        unset.push(name.to_owned());
    }
    Ok(value
        .or_else(|| default.map(str::to_owned))
        .unwrap_or_default())
}

/// How deep references may nest, the outer one counted (`${env:A:-${env:B}}` is 2).
const MAX_REFERENCE_DEPTH: usize = 8;

/// Rewrites plain scalars that Go's YAML reads as numbers and the Collector then takes as
/// integers, where serde would refuse them for an integer key, as integers:
/// * `100_000` (digits with `_` separators, optionally signed), as the Collector's README
///   writes sizes: `100000`;
/// * `1e+06` (a float in exponent form with a whole value below 2^53), as Helm's `toYaml`
///   writes every number from a million up and the Collector's decoder turns into an int:
///   `1000000`. A float key reads the integer as the same number.
///
/// Only a token that is a whole plain scalar is rewritten: the value of a key or item, or
/// an item of a flow collection, with nothing after it but a comment. Quoted strings,
/// block scalars, comments, keys and longer plain values (`msg: 1e3 errors`) are left as
/// they are, and no line changes in number.
fn plain_integers(text: &str) -> String {
    if !text.bytes().any(|b| b.is_ascii_digit()) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for YamlLine {
        line,
        in_block,
        start,
    } in yaml_lines(text)
    {
        if in_block {
            out.push_str(line);
        } else {
            plain_integers_in_line(line, start, &mut out);
        }
    }
    out
}

/// [`plain_integers`] for one line, which starts in context `start`.
fn plain_integers_in_line(line: &str, start: Context, out: &mut String) {
    let b = line.as_bytes();
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        let starts_token = (i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'[' | b'{' | b','))
            && (b[i].is_ascii_digit()
                || (matches!(b[i], b'-' | b'+') && b.get(i + 1).is_some_and(u8::is_ascii_digit)));
        if !starts_token {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < b.len()
            && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'_' | b'.' | b'+' | b'-'))
        {
            j += 1;
        }
        let token = &line[i..j];
        let ctx = start.after(&line[..i]);
        // A whole plain scalar: it starts one (after `key: `, `- `, `[`, `,`), outside
        // quotes and comments, and nothing but a comment (or, in a flow, the next item or
        // its end) follows it.
        let ends_scalar = nothing_but_a_comment(&line[j..])
            || (ctx.flow > 0 && line[j..].trim_start().starts_with([',', ']', '}']));
        let whole = ctx.quoting == Quoting::Plain && !ctx.comment && ctx.at_start && ends_scalar;
        if let Some(plain) = whole
            .then(|| separated_integer(token).or_else(|| whole_exponent_float(token)))
            .flatten()
        {
            out.push_str(&line[last..i]);
            out.push_str(&plain);
            last = j;
        }
        i = j;
    }
    out.push_str(&line[last..]);
}

/// `100_000` → `100000`: digits (after an optional sign) and `_`, starting with a digit;
/// Go's YAML drops every `_` of such a scalar (`1__000` and `1_` are 1000 and 1 there too).
fn separated_integer(token: &str) -> Option<String> {
    let digits = token.strip_prefix(['-', '+']).unwrap_or(token);
    let well_formed = token.contains('_')
        && digits.bytes().all(|c| c.is_ascii_digit() || c == b'_')
        && digits.starts_with(|c: char| c.is_ascii_digit());
    well_formed.then(|| token.replace('_', ""))
}

/// `1e+06` → `1000000`: a YAML float in exponent form (`[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+`)
/// whose value is a whole number exactly representable (below 2^53 in magnitude).
fn whole_exponent_float(token: &str) -> Option<String> {
    let digits = token.strip_prefix(['-', '+']).unwrap_or(token);
    let (mantissa, exponent) = digits.split_once(['e', 'E'])?;
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let exponent = exponent.strip_prefix(['-', '+']).unwrap_or(exponent);
    let well_formed = !int.is_empty()
        && int.bytes().all(|c| c.is_ascii_digit())
        && frac.bytes().all(|c| c.is_ascii_digit())
        && !exponent.is_empty()
        && exponent.bytes().all(|c| c.is_ascii_digit());
    if !well_formed {
        return None;
    }
    let value: f64 = token.parse().ok()?;
    let whole = value.is_finite() && value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0;
    // `-0e0` is 0.
    whole.then(|| format!("{}", value as i64))
}

/// The 1-based line where the key path `key` (`forward.max_request_bytes`,
/// `members.static[1]`, `export.otlp/backend`) is written in a YAML text: the line of its
/// deepest part found, so that a key inside a flow mapping (`tls: {ca_file: x}`) or a
/// part the text leaves out points at the nearest line that holds it. `None` when not even
/// the first part is at the top level (a key written only through a merge, say).
pub fn locate_key(text: &str, key: &str) -> Option<usize> {
    // Owned where an item's `- ` is read as indent (below).
    let mut lines: Vec<std::borrow::Cow<'_, str>> =
        text.lines().map(std::borrow::Cow::Borrowed).collect();
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    let content = |l: &str| {
        let t = l.trim_start();
        !t.is_empty() && !t.starts_with('#')
    };
    // The block being searched: lines from..to, whose direct children sit at the indent
    // of its first line written (the top level: 0).
    let (mut from, mut to) = (0usize, lines.len());
    let mut found = None;
    let parts: Vec<&str> = key.split('.').collect();
    let mut next = 0;
    // One level a message names by another name than the file's (`retry` for the
    // Collector's `retry_on_failure`, which reads into the same settings) may be passed
    // over: the keys below it are then looked for deeper in the block found so far.
    let mut skipped = false;
    while next < parts.len() {
        let Some(child) = (from..to)
            .find(|&n| content(&lines[n]))
            .map(|n| indent_of(&lines[n]))
        else {
            break;
        };
        // A key may hold dots itself (an exporter named `otlp/tempo.eu`): the longest
        // run of parts written as one key at this level is taken.
        let Some((at, name, index)) = (next + 1..=parts.len()).rev().find_map(|end| {
            // An indexed part (`policies[0]`) ends a run: the key is the text before it.
            if parts[next..end - 1].iter().any(|p| p.contains('[')) {
                return None;
            }
            let joined = parts[next..end].join(".");
            let (name, index) = match joined.split_once('[') {
                Some((n, rest)) => (
                    n.to_owned(),
                    Some(rest.strip_suffix(']')?.parse::<usize>().ok()?),
                ),
                None => (joined.clone(), None),
            };
            let at = (from..to)
                .find(|&n| {
                    indent_of(&lines[n]) == child && is_key_line(lines[n].trim_start(), &name)
                })
                // A key a translated config's error names below a level its path skips
                // (`receivers.otlp.tls` for `receivers.otlp.protocols.grpc.tls`): the
                // first written deeper in the block, rather than the block's line.
                .or_else(|| {
                    (next > 0 && index.is_none()).then_some(())?;
                    (from..to).find(|&n| {
                        indent_of(&lines[n]) > child
                            && is_key_line(lines[n].trim_start().trim_start_matches("- "), &name)
                    })
                })?;
            next = end;
            Some((at, name, index))
        }) else {
            if !skipped && next > 0 && next + 1 < parts.len() && !parts[next].contains('[') {
                skipped = true;
                next += 1;
                continue;
            }
            break;
        };
        found = Some(at + 1);
        let indent = indent_of(&lines[at]);
        // The block ends at the next line as far left as the key, or further, but for
        // the items of a sequence written at the key's own indent (`static:` then `- a`).
        let end = (at + 1..to)
            .find(|&n| {
                content(&lines[n])
                    && (indent_of(&lines[n]) < indent
                        || (indent_of(&lines[n]) == indent
                            && !lines[n].trim_start().starts_with('-')))
            })
            .unwrap_or(to);
        if let Some(i) = index {
            let Some(item) = locate_sequence_item(&lines[at..end].join("\n"), &name, i) else {
                break;
            };
            // On into the item (`policies[0].and.and_sub_policy[1].name`): its block runs
            // to the next line as far left as its `- `, which is read as indent so that
            // the item's first key lines up with the rest of its keys.
            let item_at = at + item - 1;
            found = Some(item_at + 1);
            let dash = indent_of(&lines[item_at]);
            let item_end = (item_at + 1..end)
                .find(|&n| content(&lines[n]) && indent_of(&lines[n]) <= dash)
                .unwrap_or(end);
            lines[item_at] = std::borrow::Cow::Owned(lines[item_at].replacen('-', " ", 1));
            (from, to) = (item_at, item_end);
            continue;
        }
        (from, to) = (at + 1, end);
    }
    found
}

/// Whether a line (without its indent) writes `key:`, plain or quoted.
pub fn is_key_line(trimmed: &str, key: &str) -> bool {
    [key, &format!("\"{key}\""), &format!("'{key}'")]
        .iter()
        .any(|k| {
            trimmed
                .strip_prefix(*k)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        })
}

/// An error at `key` of the file `path`, whose text is `text`, placed at the key's line
/// ([`with_line`]): for errors found on values read out of the file.
pub fn invalid_at(path: &Path, text: &str, key: String, message: String) -> ConfigError {
    with_line(
        ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        },
        text,
    )
}

/// `error` with the line of its key in `text` (the file it was read from), when it has
/// none and the key is found there: validation runs on parsed values, which carry no
/// position.
pub fn with_line(error: ConfigError, text: &str) -> ConfigError {
    match error {
        ConfigError::Invalid { path, key, message } => match locate_key(text, &key) {
            Some(line) => ConfigError::InvalidAt {
                path,
                line,
                key: written_path(text, line, &key).unwrap_or(key),
                message,
            },
            None => ConfigError::Invalid { path, key, message },
        },
        e => e,
    }
}

/// The whole path of the key written on `line` (1-based) when `key` names it with levels
/// left out (a translated config's `receivers.otlp.tls.min_version` for
/// `receivers.otlp.protocols.grpc.tls.min_version`), so that the error names the key as
/// the file writes it. `None` for a key with indexes, a line inside a sequence or flow
/// mapping, or a path that does not hold `key`'s parts in order.
fn written_path(text: &str, line: usize, key: &str) -> Option<String> {
    if key.contains('[') {
        return None;
    }
    let written = path_of_line(text, line)?;
    // `key`'s parts, each found after the one before (dots inside a key, as in
    // `otlp/tempo.eu`, are matched on the joined text).
    // Whole parts: `endpoint` is not found in `traces_endpoint`.
    // One inner part may be missing, as [`locate_key`] passes one over (`retry` for
    // `retry_on_failure`).
    let mut rest = written.as_str();
    let parts: Vec<&str> = key.split('.').collect();
    let mut skipped = false;
    for (i, part) in parts.iter().enumerate() {
        let found = rest.match_indices(part).map(|(at, _)| at).find(|&at| {
            (at == 0 || rest[..at].ends_with('.'))
                && rest[at + part.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| c == '.')
        });
        match found {
            Some(at) => rest = &rest[at + part.len()..],
            None if !skipped && i > 0 && i + 1 < parts.len() => skipped = true,
            None => return None,
        }
    }
    (written != key && rest.is_empty()).then_some(written)
}

/// The 1-based line of item `index` of the block sequence under the first `key:` line of a
/// YAML text, for errors about values that parsed but are invalid. `None` for flow-style
/// sequences (`key: [a, b]`) or when the text is not laid out as expected.
pub fn locate_sequence_item(text: &str, key: &str, index: usize) -> Option<usize> {
    let mut lines = text.lines().enumerate();
    let key_indent = lines.by_ref().find_map(|(_, l)| {
        let t = l.trim_start();
        let rest = t.strip_prefix(key)?.strip_prefix(':')?;
        (rest.trim().is_empty() || rest.trim_start().starts_with('#')).then(|| l.len() - t.len())
    })?;
    let mut item_indent = None;
    let mut seen = 0;
    for (n, l) in lines {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let indent = l.len() - t.len();
        if indent < key_indent || (indent == key_indent && !t.starts_with('-')) {
            return None;
        }
        if t.starts_with("- ") || t == "-" {
            match item_indent {
                None => item_indent = Some(indent),
                Some(i) if i != indent => continue,
                Some(_) => {}
            }
            if seen == index {
                return Some(n + 1);
            }
            seen += 1;
        }
    }
    None
}

/// Deserializes a string value with `parse`, raising `parse`'s error while the
/// deserializer still stands on the value, so that serde_yaml_ng names the key's path,
/// line and column: an error raised after `String::deserialize` has returned carries
/// neither (a user trial's `decision_wait: ${env:DW}` with DW unset was reported as only
/// `invalid duration ""`). `expecting` completes "expected …" in type errors.
pub fn parse_str<'de, D, T, E>(
    d: D,
    expecting: &'static str,
    parse: fn(&str) -> Result<T, E>,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    E: std::fmt::Display,
{
    d.deserialize_str(StrWith { expecting, parse })
}

/// [`parse_str`] for an optional value: absent or `null` is `None`.
pub fn parse_option_str<'de, D, T, E>(
    d: D,
    expecting: &'static str,
    parse: fn(&str) -> Result<T, E>,
) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    E: std::fmt::Display,
{
    d.deserialize_option(OptionStrWith(StrWith { expecting, parse }))
}

/// The visitor of [`parse_str`].
struct StrWith<T, E> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, E>,
}

impl<T, E: std::fmt::Display> serde::de::Visitor<'_> for StrWith<T, E> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<Er: serde::de::Error>(self, v: &str) -> Result<T, Er> {
        (self.parse)(v).map_err(Er::custom)
    }
}

/// The visitor of [`parse_option_str`].
struct OptionStrWith<T, E>(StrWith<T, E>);

impl<'de, T, E: std::fmt::Display> serde::de::Visitor<'de> for OptionStrWith<T, E> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.expecting)
    }

    fn visit_none<Er: serde::de::Error>(self) -> Result<Option<T>, Er> {
        Ok(None)
    }

    fn visit_unit<Er: serde::de::Error>(self) -> Result<Option<T>, Er> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_str(self.0).map(Some)
    }
}

/// The value of a plain YAML scalar Go's YAML (yaml.v3, which the Collector reads its
/// config with) reads as an integer in a form serde's YAML leaves as text or refuses for a
/// number: a leading `0` for octal (`010` is 8), `0x`/`0X`, `0o`/`0O` or `0b`/`0B` for hex,
/// octal or binary, a sign, and `_` anywhere (yaml.v3 drops them and parses with
/// `strconv.ParseInt(s, 0, 64)`, then `ParseUint`). `None` for anything else, decimal
/// digits included: serde's YAML gives a plain one as a number already, so text of
/// decimal digits was quoted, which the Collector refuses for a number too.
pub fn go_integer_text(text: &str) -> Option<i128> {
    // yaml.v3 reads a scalar as a number only when it starts like one.
    if !text.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+') {
        return None;
    }
    let plain = text.replace('_', "");
    let (negative, digits) = match plain.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, plain.strip_prefix('+').unwrap_or(&plain)),
    };
    let (radix, digits) = match digits.get(..2) {
        Some("0x" | "0X") => (16, &digits[2..]),
        Some("0o" | "0O") => (8, &digits[2..]),
        Some("0b" | "0B") => (2, &digits[2..]),
        _ if digits.len() > 1 && digits.starts_with('0') => (8, &digits[1..]),
        _ => return None,
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let magnitude = match u64::from_str_radix(digits, radix) {
        Ok(m) => m,
        // `08` is no octal: yaml.v3 then reads it as a float, 8.
        Err(_) if radix == 8 && !plain.contains(['o', 'O']) => digits.parse::<u64>().ok()?,
        Err(_) => return None,
    };
    let value = if negative {
        -i128::from(magnitude)
    } else {
        i128::from(magnitude)
    };
    // ParseInt's range for negatives, ParseUint's for the rest.
    (value >= i128::from(i64::MIN)).then_some(value)
}

/// A number setting (`sampling_percentage`) read as the Collector reads one: a float, an
/// integer in any form Go's YAML reads ([`go_integer_text`]: `0x10` is 16, `010` is 8),
/// where serde's YAML refuses those for a float.
pub fn go_float<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    struct Number;

    impl serde::de::Visitor<'_> for Number {
        type Value = f64;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a number")
        }

        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<f64, E> {
            go_integer_text(v)
                .map(|n| n as f64)
                .ok_or_else(|| E::invalid_type(serde::de::Unexpected::Str(v), &self))
        }
    }
    d.deserialize_any(Number)
}

/// An integer setting read as the Collector's config decoder (mapstructure) reads one: a
/// YAML float is taken for its whole part (`threshold_ms: 1.5` is 1, `-2.7` is -2), where
/// serde refuses it; a value out of the setting's range, and NaN or an infinity, are
/// refused. `#[serde(with = "tailgate_core::config::go_int")]` on the field (`go_int::option`
/// for an `Option`).
pub mod go_int {
    use serde::de::{Deserializer, Error, Visitor};

    struct Whole<T>(std::marker::PhantomData<T>);

    impl<T: TryFrom<i128>> Visitor<'_> for Whole<T> {
        type Value = T;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer")
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<T, E> {
            T::try_from(i128::from(v)).map_err(|_| E::custom(format!("{v} is out of range")))
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<T, E> {
            T::try_from(i128::from(v)).map_err(|_| E::custom(format!("{v} is out of range")))
        }

        fn visit_str<E: Error>(self, v: &str) -> Result<T, E> {
            // Go's YAML reads `010` (octal) and `0X10` as integers where serde's leaves them
            // text; `0x10`, `0o10` and `0b11` come as integers already.
            match super::go_integer_text(v) {
                Some(n) => T::try_from(n).map_err(|_| E::custom(format!("{v} is out of range"))),
                None => Err(E::invalid_type(serde::de::Unexpected::Str(v), &self)),
            }
        }

        fn visit_f64<E: Error>(self, v: f64) -> Result<T, E> {
            // Past 2^100 no integer setting fits; the cast below saturates anyway.
            if !v.is_finite() || v.abs() > 1e30 {
                return Err(E::custom(format!("{v} is out of range")));
            }
            // mapstructure refuses a negative float for an unsigned setting, even one that
            // truncates to 0.
            if v < 0.0 && T::try_from(-1).is_err() {
                return Err(E::custom(format!("{v} is out of range")));
            }
            T::try_from(v.trunc() as i128).map_err(|_| E::custom(format!("{v} is out of range")))
        }
    }

    /// Reads an integer, or a float's whole part.
    pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<T, D::Error> {
        d.deserialize_any(Whole(std::marker::PhantomData))
    }

    /// [`deserialize`] for an `Option` (null or left out: `None`).
    pub mod option {
        use serde::de::Deserializer;
        use serde::Deserialize;

        /// Reads `null` as `None`, else as [`super::deserialize`] does.
        pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<i128>>(
            d: D,
        ) -> Result<Option<T>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped<T: TryFrom<i128>>(#[serde(deserialize_with = "super::deserialize")] T);
            Ok(Option::<Wrapped<T>>::deserialize(d)?.map(|Wrapped(v)| v))
        }
    }
}

/// Durations as the Collector (Go's `time.ParseDuration`) writes them: a sequence of
/// decimal numbers, each with an optional fraction and a unit (`ns`, `us`, `µs`, `ms`, `s`,
/// `m`, `h`), like `300ms`, `1.5h` or `1h15m30s`; `0` alone. Use with
/// `#[serde(with = "tailgate_core::config::go_duration")]` on a `Duration`, or
/// `go_duration::option` on an `Option<Duration>`.
pub mod go_duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    /// A duration Go would not read, or a negative one.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error("invalid duration {text:?}: {}", if text.trim().is_empty() {
        "empty (an unset ${env:…} variable?); write it as Go does, e.g. 10s"
    } else if text.trim().strip_prefix('-').is_some_and(|d| parse(d).is_ok()) {
        "must not be negative"
    } else if matches!(text.trim(), "~" | "null" | "Null" | "NULL") {
        "null; leave the key out for its default, or write it as Go does, e.g. 10s"
    } else {
        "write it as Go does, e.g. 500ms, 10s, 1m30s, 1.5h"
    })]
    pub struct DurationError {
        /// The text as written.
        pub text: String,
    }

    /// Parses one duration; negative durations are refused.
    pub fn parse(text: &str) -> Result<Duration, DurationError> {
        let t = text.trim();
        let bad = || DurationError {
            text: text.to_owned(),
        };
        if t == "0" {
            return Ok(Duration::ZERO);
        }
        // Go reads `-0s` (any zero with a minus) as 0; other negatives are refused.
        if let Some(magnitude) = t.strip_prefix('-') {
            return match parse(magnitude) {
                Ok(d) if d.is_zero() => Ok(Duration::ZERO),
                _ => Err(bad()),
            };
        }
        let t = t.strip_prefix('+').unwrap_or(t);
        if t.is_empty() || t.starts_with('-') {
            return Err(bad());
        }
        let mut rest = t;
        let mut nanos: f64 = 0.0;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(bad)?;
            let (num, after) = rest.split_at(num_len);
            if num.is_empty() || num == "." {
                return Err(bad());
            }
            let value: f64 = num.parse().map_err(|_| bad())?;
            let unit_len = after
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(after.len());
            let (unit, next) = after.split_at(unit_len);
            let scale = match unit {
                "ns" => 1.0,
                "us" | "µs" | "μs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                _ => return Err(bad()),
            };
            nanos += value * scale;
            rest = next;
        }
        if !nanos.is_finite() || nanos > u64::MAX as f64 {
            return Err(bad());
        }
        Ok(Duration::from_nanos(nanos.round() as u64))
    }

    /// Deserializes a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::parse_str(d, "a duration such as 10s", parse)
    }

    /// Serializes a duration in seconds, as `10s`.
    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}s", v.as_secs_f64()))
    }

    /// The same for an `Option<Duration>` (absent or `null` is `None`).
    pub mod option {
        use std::time::Duration;

        use serde::{Deserializer, Serializer};

        /// Deserializes an optional duration.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::super::parse_option_str(d, "a duration such as 10s", super::parse)
        }

        /// Serializes an optional duration.
        pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => super::serialize(v, s),
                None => s.serialize_none(),
            }
        }
    }
}

/// Durations of Tailgate's own keys and of Collector blocks read with them (exporters'
/// `timeout` and `retry_on_failure`, ...): Go's forms first, as the Collector reads them
/// (`500ms`, `1m30s`, `.5s`, `+5s`, `0`), then humantime's longer ones (`10sec`, `2
/// minutes`), which these keys have always taken. A bare number other than `0` is
/// refused, as in every file. Use with `#[serde(with = "tailgate_core::config::duration")]`.
pub mod duration {
    use std::time::Duration;

    use serde::Deserializer;

    pub use super::go_duration::DurationError;

    /// Parses one duration: Go's forms, then humantime's.
    pub fn parse(text: &str) -> Result<Duration, DurationError> {
        super::go_duration::parse(text).or_else(|go| {
            humantime_serde::re::humantime::parse_duration(text.trim()).map_err(|_| go)
        })
    }

    /// Deserializes a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::parse_str(d, "a duration such as 10s", parse)
    }

    /// The same for an `Option<Duration>` (absent or `null` is `None`). Read only: no
    /// settings struct is written back out.
    pub mod option {
        use std::time::Duration;

        /// Deserializes an optional duration.
        pub fn deserialize<'de, D: serde::Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            super::super::parse_option_str(d, "a duration such as 10s", super::parse)
        }
    }
}

/// Whether this process only checks its config (`--check`), set by [`check_only`].
static CHECKING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Files a check did not read because they are not on this machine, as notes.
static ABSENT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// For `--check`: a switch of the whole process, set by the binaries' `main` only. From
/// now on, a listen host name that does not resolve here is taken (see
/// [`listen_addr::check_only`]), and a certificate, key or CA file that is not on this
/// machine is named by [`check_notes`] instead of refused ([`absent_for_check`]): a
/// config is often checked in CI, where the files mounted from Secrets in the pod do not
/// exist, and the Collector's `validate` opens none of them. At start both are errors.
pub fn check_only() {
    CHECKING.store(true, std::sync::atomic::Ordering::Relaxed);
    listen_addr::check_only();
}

/// Whether [`check_only`] was called.
pub fn checking() -> bool {
    CHECKING.load(std::sync::atomic::Ordering::Relaxed)
}

/// True when the process only checks its config and `path` (the value of `key`) is not
/// on this machine: the caller skips reading it, and [`check_notes`] names it. A file that
/// exists but cannot be read is still read, and refused, as at start.
pub fn absent_for_check(key: &str, path: &Path) -> bool {
    if !checking()
        || !matches!(std::fs::metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
    {
        return false;
    }
    let note = format!(
        "{key}: {} is not on this machine: not read by the check; it must exist where the config runs (it is read at start)",
        path.display()
    );
    let mut absent = ABSENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !absent.contains(&note) {
        absent.push(note);
    }
    true
}

/// What a check took without verifying it here: listen names that do not resolve and
/// files that are not on this machine.
pub fn check_notes() -> Vec<String> {
    let mut notes = listen_addr::unresolved_notes();
    notes.extend(
        ABSENT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned(),
    );
    notes
}

/// Listen addresses as the Collector writes them: `host:port` with an IP or a host name
/// (`localhost:4317`, resolved once at load; not refused by `--check` when it does not
/// resolve there, see [`listen_addr::check_only`]), `:port` for every interface, or `null`
/// for off. Use with `#[serde(with = "tailgate_core::config::listen_addr")]` on an
/// `Option<SocketAddr>`.
pub mod listen_addr {
    use std::net::{SocketAddr, ToSocketAddrs};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    use serde::{Deserializer, Serializer};

    /// Why a listen address is refused.
    #[derive(Debug, thiserror::Error)]
    pub enum ListenAddrError {
        /// No `:port`.
        #[error("listen address {0:?} needs a port (host:port)")]
        NoPort(String),
        /// The host name does not resolve.
        #[error("listen address {text:?}: {error}")]
        Resolve {
            /// The address as written.
            text: String,
            /// The resolver's error.
            #[source]
            error: std::io::Error,
        },
        /// The host name resolves to no address.
        #[error("listen address {0:?} resolves to nothing")]
        Nothing(String),
    }

    /// Whether host names that do not resolve are taken for now (`--check`).
    static CHECK_ONLY: AtomicBool = AtomicBool::new(false);
    /// The addresses taken so, for `--check` to name.
    static UNRESOLVED: Mutex<Vec<String>> = Mutex::new(Vec::new());

    /// For `--check`: from now on, a host name that does not resolve on this machine is
    /// taken (as 192.0.2.1, a documentation address, with its port) and named by
    /// [`unresolved_notes`], not refused. A switch of the whole process, set by the
    /// binaries' `main` only. A config written for where it runs (`otel-gateway:4317`, a Compose
    /// service name) checks anywhere, as the Collector's `validate` resolves nothing;
    /// at start, a name that does not resolve is still an error.
    pub fn check_only() {
        CHECK_ONLY.store(true, Ordering::Relaxed);
    }

    /// A note for each listen address taken unresolved since [`check_only`].
    pub fn unresolved_notes() -> Vec<String> {
        UNRESOLVED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|name| format!("listen address {name:?} does not resolve on this machine: taken for the check, but it must resolve where the config runs (it is resolved at start)"))
            .collect()
    }

    /// Resolves one listen address.
    pub fn parse(text: &str) -> Result<SocketAddr, ListenAddrError> {
        let text = text.trim();
        if let Ok(a) = text.parse::<SocketAddr>() {
            return Ok(a);
        }
        let full = match text.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}"),
            None => text.to_owned(),
        };
        if !full.contains(':') {
            return Err(ListenAddrError::NoPort(text.to_owned()));
        }
        let resolved = match full.to_socket_addrs() {
            Ok(mut addrs) => addrs
                .next()
                .ok_or_else(|| ListenAddrError::Nothing(text.to_owned())),
            Err(error) => Err(ListenAddrError::Resolve {
                text: text.to_owned(),
                error,
            }),
        };
        match resolved {
            Err(_) if CHECK_ONLY.load(Ordering::Relaxed) => {
                // Only a name with a valid port is taken: a bad port is the file's.
                let port = full
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok());
                match port {
                    Some(port) => {
                        let mut names = UNRESOLVED
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        if !names.iter().any(|n| n == text) {
                            names.push(text.to_owned());
                        }
                        // TEST-NET-1: an address no check reads as "every interface"
                        // or "this machine" (a gateway's identity refuses 0.0.0.0).
                        Ok(SocketAddr::from(([192, 0, 2, 1], port)))
                    }
                    None => resolved,
                }
            }
            r => r,
        }
    }

    /// Deserializes an optional listen address.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        super::parse_option_str(d, "a listen address host:port", parse)
    }

    /// Serializes it back as `ip:port`.
    pub fn serialize<S: Serializer>(a: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.serialize_str(&a.to_string()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(
        vars: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str, &str) -> Result<Option<String>, String> {
        move |scheme, name| match scheme {
            "env" => Ok(vars
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())),
            other => Err(format!("unsupported scheme {other:?}")),
        }
    }

    /// Scenario: a top-level key written twice, the second time at line 4 (a docs trial
    /// found the error gave no line); a nested key written twice.
    /// Guarantees: the line of the second, and the key; the nested one keeps the parser's
    /// own position.
    #[test]
    fn a_top_level_key_written_twice_is_placed() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Top {
            #[serde(default, rename = "members")]
            _members: Option<serde_yaml_ng::Value>,
            #[serde(default, rename = "receive")]
            _receive: Option<Inner>,
        }
        #[derive(Debug, serde::Deserialize)]
        struct Inner {
            #[serde(default)]
            _grpc: Option<String>,
        }
        let path = Path::new("router.yaml");
        let text = "members:\n  static: [a:1]\nreceive: {}\nmembers:\n  static: [b:1]\n";
        let err = parse_plain_yaml::<Top>(path, text).unwrap_err().to_string();
        assert!(err.starts_with("router.yaml:4: members:"), "{err}");
        assert!(
            err.contains("written twice in one mapping (first at line 1)"),
            "{err}"
        );
        let text = "receive:\n  _grpc: a\n  _grpc: b\n";
        let err = parse_plain_yaml::<Top>(path, text).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "router.yaml:3: receive._grpc: written twice in one mapping (first at line 2)"
            ),
            "{err}"
        );
    }

    /// Scenario: a Collector section name (`exporters:`) as the first key of a gateway
    /// config, and further down (found by a user trial: the first had no line).
    /// Guarantees: the line of the key either way, and where the section goes instead.
    #[test]
    fn a_collector_section_name_is_placed_and_explained() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Top {
            #[serde(default)]
            _export: Option<serde_yaml_ng::Value>,
            #[serde(default)]
            _receive: Option<serde_yaml_ng::Value>,
        }
        let path = Path::new("gateway.yaml");
        for (text, line) in [
            ("exporters:\n  otlp: {endpoint: x:4317}\n", 1),
            ("_receive: {}\nexporters:\n  otlp: {}\n", 2),
        ] {
            let err = parse_plain_yaml::<Top>(path, text).unwrap_err().to_string();
            assert!(
                err.contains(&format!("gateway.yaml:{line}"))
                    || err.contains(&format!("line {line}")),
                "{err}"
            );
            assert!(err.contains("unknown field `exporters`"), "{err}");
        }
        let hint = readable("unknown field `exporters`, expected one of `receive`, `export`");
        assert!(hint.contains("go under Tailgate's export:"), "{hint}");
        // The receivers' hint says what the receive block takes (an address, not the
        // Collector's block: found by a user trial following the old hint).
        let hint = readable("unknown field `receivers`, expected one of `receive`, `export`");
        assert!(
            hint.contains(
                "receivers.otlp.protocols.grpc.endpoint is Tailgate's receive.grpc: HOST:PORT"
            ),
            "{hint}"
        );
        let hint = readable("unknown field `processors`, expected one of `receive`, `buffer`");
        assert!(hint.contains("is the --policies file"), "{hint}");
        // Typos and the loadbalancing exporter's names get a "did you mean".
        for (message, says) in [
            (
                "members.dns: unknown field `hostname`, expected one of `name`, `port`, `interval`",
                Some("(did you mean `name`?)"),
            ),
            (
                "unknown field `resolver`, expected one of `receive`, `members`, `forward`",
                Some("(did you mean `members`?)"),
            ),
            (
                "unknown field `intreval`, expected one of `name`, `port`, `interval`",
                Some("(did you mean `interval`?)"),
            ),
            ("unknown field `zzz`, expected one of `name`, `port`", None),
        ] {
            let hint = readable(message);
            match says {
                Some(says) => assert!(hint.contains(says), "{hint}"),
                None => assert!(!hint.contains("did you mean"), "{hint}"),
            }
        }
    }

    /// Scenario: a list key given a sequence, one string, a string with commas, an empty
    /// string and nothing (`status_codes: ERROR`, a `${env:…}` holding `a,b`).
    /// Guarantees: the Collector's reading (mapstructure's string-to-slice hook): the
    /// sequence as it is, a string split at commas, empty and nothing as no items.
    #[test]
    fn a_string_for_a_list_is_split_at_commas() {
        #[derive(Debug, serde::Deserialize)]
        struct Keys {
            #[serde(default, deserialize_with = "comma_list")]
            values: Vec<String>,
        }
        let read = |yaml: &str| serde_yaml_ng::from_str::<Keys>(yaml).unwrap().values;
        assert_eq!(read("values: [a, 'b,c']"), ["a", "b,c"]);
        assert_eq!(read("values: ERROR"), ["ERROR"]);
        assert_eq!(read("values: checkout,payment"), ["checkout", "payment"]);
        assert_eq!(read("values: 'a, b'"), ["a", " b"]);
        assert!(read("values: ''").is_empty());
        assert!(read("values:").is_empty());
        assert!(read("{}").is_empty());
        let err = serde_yaml_ng::from_str::<Keys>("values: {a: b}").unwrap_err();
        assert!(
            err.to_string().contains("items separated by commas"),
            "{err}"
        );
    }

    /// Scenario: references that are a whole value and resolve to YAML for a list or a
    /// mapping (flow style, or a file's block of items), and ones that do not.
    /// Guarantees: the Collector's reading (its providers give YAML): the collection, on
    /// the reference's own line (later line numbers unchanged); a one-line `k: v`, text
    /// with commas, and a collection inside quotes or inside a longer value stay text.
    #[test]
    fn a_whole_value_reference_reads_as_the_list_or_mapping_it_holds() {
        let source = |scheme: &str, name: &str| -> Result<Option<String>, String> {
            Ok(Some(
                match (scheme, name) {
                    ("env", "LIST") => "[checkout, payment]",
                    ("env", "MAP") => "{x-scope-orgid: team-a}",
                    ("env", "COMMAS") => "checkout,payment",
                    ("env", "PAIR") => "user: pass",
                    ("file", "items.yaml") => "- name: a\n  type: always_sample\n- name: b\n",
                    _ => return Ok(None),
                }
                .to_owned(),
            ))
        };
        let text = "a: ${env:LIST}\nb: {h: ${env:MAP}}\nc: ${env:COMMAS}\nd: ${env:PAIR}\n\
                    e: ${file:items.yaml}\nf: \"${env:LIST}\"\ng: \"x${env:LIST}\"\nlast: 1\n";
        let expanded = expand(text, &source).unwrap();
        assert_eq!(expanded.lines().count(), 8, "{expanded}");
        assert!(expanded.ends_with("last: 1\n"));
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&expanded).unwrap();
        let yaml = |t: &str| serde_yaml_ng::from_str::<serde_yaml_ng::Value>(t).unwrap();
        assert_eq!(v["a"], yaml("[checkout, payment]"));
        assert_eq!(v["b"]["h"], yaml("{x-scope-orgid: team-a}"));
        assert_eq!(v["c"], yaml("checkout,payment"));
        assert_eq!(v["d"], yaml("'user: pass'"));
        assert_eq!(v["e"], yaml("[{name: a, type: always_sample}, {name: b}]"));
        assert_eq!(v["f"], yaml("'[checkout, payment]'"));
        assert_eq!(v["g"], yaml("'x[checkout, payment]'"));
    }

    /// Scenario: references on lines inside a flow collection begun on an earlier line (the
    /// Collector README's style), in double and single quotes and unquoted, and one inside
    /// a quoted string begun on an earlier line.
    /// Guarantees: a quoted string opened on the reference's line takes any value, escaped
    /// (found by a user trial: a regular expression was refused with advice it already
    /// followed); unquoted, only a value that reads the same anywhere; inside a string of
    /// earlier lines, only such a value too.
    #[test]
    fn quoted_references_in_a_flow_collection_of_several_lines() {
        let vars = env(&[
            ("RX", "^/api/(v1|v2)/.*$"),
            ("SVC", "Order's \"Service\""),
            ("PLAIN", "v1"),
        ]);
        let text = "values:\n  [\n    \"${env:RX}\",\n    '${env:SVC}',\n    ${env:PLAIN},\n  ]\n";
        let expanded = expand(text, &vars).unwrap();
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&expanded).unwrap();
        let yaml = |t: &str| serde_yaml_ng::from_str::<serde_yaml_ng::Value>(t).unwrap();
        assert_eq!(
            v["values"],
            serde_yaml_ng::Value::Sequence(vec![
                yaml("'^/api/(v1|v2)/.*$'"),
                yaml("'Order''s \"Service\"'"),
                yaml("v1"),
            ])
        );
        let unquoted = "values:\n  [\n    ${env:RX},\n  ]\n";
        let (line, message) = expand(unquoted, &vars).unwrap_err();
        assert_eq!(line, 3);
        assert!(message.contains("continues"), "{message}");
        let in_string = "name: \"a\n  ${env:SVC}\"\n";
        assert_eq!(expand(in_string, &vars).unwrap_err().0, 2);
    }

    /// Scenario: durations as Go's time.ParseDuration reads them (the Collector's configs).
    /// Guarantees: the same value; forms Go refuses are refused.
    #[test]
    fn durations_read_as_go_writes_them() {
        use go_duration::parse;
        use std::time::Duration;
        assert_eq!(parse("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1h15m30s").unwrap(), Duration::from_secs(4530));
        assert_eq!(parse("2us").unwrap(), Duration::from_micros(2));
        assert_eq!(parse("2µs").unwrap(), Duration::from_micros(2));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse(".5s").unwrap(), Duration::from_millis(500));
        for bad in ["", "10", "1d", "-1s", "1 s", "s", "1.5.2s"] {
            assert_eq!(
                parse(bad),
                Err(go_duration::DurationError { text: bad.into() }),
                "{bad:?}"
            );
        }
        // Go reads a negative duration; Tailgate's settings take none, and say so; `-0s`
        // is 0 there and here, and `-abc` is no duration at all.
        assert!(parse("-5s")
            .unwrap_err()
            .to_string()
            .ends_with("must not be negative"));
        assert_eq!(parse("-0s").unwrap(), Duration::ZERO);
        assert!(parse("-abc")
            .unwrap_err()
            .to_string()
            .ends_with("write it as Go does, e.g. 500ms, 10s, 1m30s, 1.5h"));
        assert!(parse("null")
            .unwrap_err()
            .to_string()
            .contains("null; leave the key out"));
    }

    /// Scenario: a duration and a listen address that do not parse, at the top level and
    /// nested, one left empty by an unset variable (found by a user trial: such errors
    /// named neither key nor line). Guarantees: the error names the key's path and line.
    #[test]
    fn value_errors_name_the_key_and_line() {
        #[derive(Debug, serde::Deserialize)]
        struct Inner {
            #[serde(default, with = "go_duration::option")]
            _linger: Option<std::time::Duration>,
            #[serde(default, with = "listen_addr")]
            _grpc: Option<std::net::SocketAddr>,
        }
        #[derive(Debug, serde::Deserialize)]
        struct Top {
            #[serde(with = "go_duration")]
            _wait: std::time::Duration,
            #[serde(default)]
            _inner: Option<Inner>,
        }
        let src = env(&[]);
        let p = Path::new("t.yaml");
        for (text, says) in [
            (
                "_wait: ${env:UNSET}\n",
                "_wait: invalid duration \"\": empty (an unset ${env:…} variable?)",
            ),
            (
                "_wait: 10s\n_inner:\n  _linger: 5\n",
                "_inner._linger: invalid duration \"5\"",
            ),
            (
                "_wait: 10s\n_inner:\n  _grpc: nohost\n",
                "_inner._grpc: listen address",
            ),
        ] {
            let expanded = collector_text(p, text, &src).unwrap();
            let err = parse_plain_yaml::<Top>(p, &expanded)
                .unwrap_err()
                .to_string();
            let line = text.lines().count();
            assert!(err.contains(says), "{err}");
            assert!(err.contains(&format!("at line {line} ")), "{err}");
        }
        let ok: Top = parse_plain_yaml(p, "_wait: 1s\n_inner: {_linger: null}\n").unwrap();
        assert!(ok._inner.unwrap()._linger.is_none());
        // A tab in the indentation, which the parser calls "a character that cannot start
        // any token", is named as what it is, at its line; a tab after a key's colon is
        // fine in YAML and still reads.
        let tabbed = parse_plain_yaml::<Top>(p, "_wait: 1s\n_inner:\n\t_linger: 5s\n");
        assert!(
            matches!(&tabbed, Err(ConfigError::InvalidAt { line: 3, message, .. }) if message.contains("tab")),
            "{tabbed:?}"
        );
        assert!(parse_plain_yaml::<Top>(p, "_wait:\t1s\n").is_ok());
        // After a line ending in a value, the parser words it otherwise; the same answer.
        let after_value = parse_plain_yaml::<Top>(p, "_inner:\n  _linger: 5s\n\t_grpc: x\n");
        assert!(
            matches!(&after_value, Err(ConfigError::InvalidAt { line: 3, message, .. }) if message.contains("tab")),
            "{after_value:?}"
        );
        // In a flow mapping a tab may indent; a bad value there keeps its own words.
        let flow =
            parse_plain_yaml::<Top>(p, "_wait: 1s\n_inner: {_linger: 5s,\n\t_grpc: nohost}\n");
        assert!(
            matches!(&flow, Err(ConfigError::Parse { error, .. }) if error.to_string().contains("listen address")),
            "{flow:?}"
        );
    }

    /// Scenario: keys written twice below the top level: in a struct, a sequence of
    /// structs, a flow mapping and a map. Guarantees: each is refused; in block style at
    /// the second writing's line with the first's, under its key path.
    #[test]
    fn a_nested_key_written_twice_is_named_at_its_second_line() {
        // In a struct, a sequence of structs, and a map.
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Inner {
            a: Option<u32>,
            b: Option<u32>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            inner: Inner,
            list: Option<Vec<Inner>>,
            headers: Option<std::collections::BTreeMap<String, String>>,
        }
        let p = Path::new("f.yaml");
        let e =
            parse_plain_yaml::<Outer>(p, "inner:\n  a: 1\n  # b\n  b: 2\n  a: 3\n").unwrap_err();
        assert!(
            matches!(&e, ConfigError::InvalidAt { line: 5, key, message, .. }
                if key == "inner.a" && message.contains("first at line 2")),
            "{e}"
        );
        let e = parse_plain_yaml::<Outer>(
            p,
            "inner: {}\nlist:\n  - a: 1\n    b: 2\n  - b: 1\n    b: 2\n",
        )
        .unwrap_err();
        assert!(
            matches!(&e, ConfigError::InvalidAt { line: 6, key, .. } if key.ends_with(".b")),
            "{e}"
        );
        // In a flow mapping, over lines as the Collector README writes them.
        let e = parse_plain_yaml::<Outer>(
            p,
            "inner: {}\nheaders: {\n  x-key: \"a, x-key: b\",\n  y: \"{x-key: 1}\",\n  'x-key': b\n}\n",
        )
        .unwrap_err();
        assert!(
            matches!(&e, ConfigError::InvalidAt { line: 5, key, message, .. }
                if key == "headers.x-key" && message.contains("first at line 3")),
            "{e}"
        );
        let e = parse_plain_yaml::<Outer>(p, "inner: {a: 1,\n  list: [{a: 2}],\n  a: 3}\n")
            .unwrap_err();
        assert!(
            matches!(&e, ConfigError::InvalidAt { line: 3, key, .. } if key == "inner.a"),
            "{e}"
        );
        // Into a map, which serde fills with the last value without a word.
        let e = parse_plain_yaml::<Outer>(p, "inner: {}\nheaders:\n  x-key: a\n  x-key: b\n")
            .unwrap_err();
        assert!(
            matches!(&e, ConfigError::InvalidAt { line: 4, key, .. } if key == "headers.x-key"),
            "{e}"
        );
    }

    /// Scenario: listen addresses in the Collector's forms. Guarantees: IPs, host names and
    /// `:port` resolve; a missing port is a clear error.
    #[test]
    fn listen_addresses_take_the_collectors_forms() {
        use listen_addr::parse;
        assert_eq!(parse("127.0.0.1:4317").unwrap().port(), 4317);
        assert!(parse("localhost:4317").unwrap().ip().is_loopback());
        assert!(parse(":8888").unwrap().ip().is_unspecified());
        assert_eq!(parse("[::1]:4318").unwrap().port(), 4318);
        assert!(matches!(
            parse("localhost"),
            Err(listen_addr::ListenAddrError::NoPort(t)) if t == "localhost"
        ));
    }

    /// Scenario: references as the Collector's confmap resolves them (env provider,
    /// `${NAME}` default scheme, `:-` defaults, `$$` escapes). Guarantees: same text out.
    #[test]
    fn references_expand_as_the_collector_does() {
        let src = env(&[("WAIT", "10s"), ("PCT", "25")]);
        let got = expand(
            "a: ${env:WAIT}\nb: ${PCT}\nc: ${env:UNSET:-7}\nd: ${UNSET}\ne: $$HOME $PLAIN\n",
            &src,
        )
        .unwrap();
        assert_eq!(got, "a: 10s\nb: 25\nc: 7\nd: \ne: $HOME $PLAIN\n");
        // Bare `$NAME`s the environment has are noted for a warning, each where it is
        // (`warn` says each name once); `$$`, `${…}`, a `$` before a non-letter, comments, and names
        // the environment does not have (the rest of a secret: `Tr0ub$dor`) are not.
        let vars = env(&[
            ("PLAIN", "p"),
            ("OTHER_1", "o"),
            ("COMMENTED", "c"),
            ("HOME", "h"),
        ]);
        let expanded = expand_collect(
            "a: $PLAIN\nb: x $$HOME ${env:PLAIN} $5 Tr0ub$dor\nc: [$PLAIN, $OTHER_1] # $COMMENTED\n",
            &vars,
        );
        let bare = |name: &str| Notice::Bare(name.to_owned());
        let bare_ones: Vec<_> = expanded
            .notices
            .iter()
            .filter(|(_, n)| matches!(n, Notice::Bare(_)))
            .cloned()
            .collect();
        assert_eq!(
            bare_ones,
            [(1, bare("PLAIN")), (3, bare("PLAIN")), (3, bare("OTHER_1"))]
        );
        // Said once each, at the first line read: all lines, then line 1 left out.
        let said = |read: &dyn Fn(usize) -> bool| -> Vec<(usize, Notice)> {
            to_say(&bare_ones, read).into_iter().cloned().collect()
        };
        assert_eq!(said(&|_| true), [(1, bare("PLAIN")), (3, bare("OTHER_1"))]);
        assert_eq!(
            said(&|l| l != 1),
            [(3, bare("PLAIN")), (3, bare("OTHER_1"))]
        );
        assert_eq!(expand("a: 1\nb: ${env:1X}\n", &src).unwrap_err().0, 2);
        assert_eq!(expand("a: 1\n${env:1X}: 2\n", &src).unwrap_err().0, 2);
        assert!(expand("a: ${http:x}\n", &src)
            .unwrap_err()
            .1
            .contains("http"));
        assert!(expand("a: ${env:X\n", &src)
            .unwrap_err()
            .1
            .contains("unterminated"));
    }

    /// Scenario: a reference that is a whole value or item inside a flow collection on its
    /// line, its value holding what YAML reads specially there (a DSN with `@` and `?`, a
    /// list separator), or a negative number.
    /// Guarantees: read as its text (a number as a number), where the Collector's YAML
    /// parser refuses an unquoted `${…}` inside `{…}` or `[…]` (a departure: docs say so);
    /// a reference that is part of a flow value is still refused.
    #[test]
    fn whole_flow_references_read_as_their_text() {
        // A value YAML would read specially, whole inside a flow collection (a DSN in a
        // flow mapping of headers, as Uptrace's docs write it): read as its text.
        let src = env(&[
            ("DSN", "https://tok@api.uptrace.dev?grpc=4317"),
            ("T", "a, b"),
            ("N", "-5"),
        ]);
        let got = expand(
            "h: { uptrace-dsn: ${env:DSN}, x: 1 }\nl: [${env:T}, ${env:DSN}]\n",
            &src,
        )
        .unwrap();
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&got).unwrap();
        let dsn = "https://tok@api.uptrace.dev?grpc=4317";
        assert_eq!(v["h"]["uptrace-dsn"].as_str(), Some(dsn));
        assert_eq!(v["h"]["x"].as_u64(), Some(1));
        assert_eq!(v["l"][0].as_str(), Some("a, b"));
        assert_eq!(v["l"][1].as_str(), Some(dsn));
        let n = expand("m: {n: ${env:N}}\nl: [${env:N}]\n", &src).unwrap();
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&n).unwrap();
        assert_eq!(v["m"]["n"].as_i64(), Some(-5));
        assert_eq!(v["l"][0].as_i64(), Some(-5));
        // Not whole (text follows inside the value): still refused.
        assert!(expand("h: { k: ${env:T} x }\n", &src).is_err());
    }

    /// Scenario: texts with document markers: a leading `---` (after comments and a
    /// directive), two and three documents, `---` with content on its line, a `----` line
    /// and a `--- #` comment. Guarantees: only markers after content start a later
    /// document, with their line and offset; a config file of two documents is refused
    /// naming the second's line (serde's message named none).
    #[test]
    fn later_documents_are_found_by_their_markers() {
        assert!(later_documents("# c\n%YAML 1.2\n---\na: 1\n").is_empty());
        assert!(later_documents("a: 1\n----\n").is_empty());
        let text = "a: 1\n--- # two\nb: 2\n---\n---\nc: 3\n";
        let found = later_documents(text);
        assert_eq!(found.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [2, 4, 5]);
        assert!(text[found[0].1..].starts_with("--- # two"));
        assert_eq!(later_documents("--- {a: 1}\n--- {b: 2}\n").len(), 1);
        // An empty first document: the second starts at the second marker.
        assert_eq!(later_documents("---\n---\nc: 3\n"), [(2, 4)]);
        let err =
            parse_plain_yaml::<serde_yaml_ng::Value>(Path::new("g.yaml"), "a: 1\n---\nb: 2\n")
                .unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidAt { line: 2, key, .. } if key == "---"),
            "{err:?}"
        );
    }

    /// Scenario: a reference that is the whole of a quoted value and holds a number or a
    /// boolean (`sampling_percentage: "${env:P}"`, found in a real tail-sampling guide),
    /// in a block mapping, a list and a flow mapping; beside it quoted references that are
    /// text (a longer string, a value that is not a number, a leading zero).
    /// Guarantees: the first are read typed, as the Collector reads them; the others stay
    /// strings; lines are unchanged.
    #[test]
    fn quoted_whole_references_to_numbers_are_typed() {
        let src = env(&[
            ("P", "25"),
            ("B", "true"),
            ("F", "0.5"),
            ("Z", "007"),
            ("W", "5s"),
        ]);
        let text = "a: \"${env:P}\"\nb: '${env:B}' # flag\nl:\n  - \"${env:F}\"\nf: { x: \"${env:P}\", y: '${env:F}' }\ns: \"id ${env:P}\"\nz: \"${env:Z}\"\nw: \"${env:W}\"\n";
        let expanded = expand(text, &src).unwrap();
        assert_eq!(expanded.lines().count(), 8, "{expanded}");
        let v: serde_yaml_ng::Value = parse_plain_yaml(Path::new("x"), &expanded).unwrap();
        assert_eq!(v["a"].as_u64(), Some(25));
        assert_eq!(v["b"].as_bool(), Some(true));
        assert_eq!(v["l"][0].as_f64(), Some(0.5));
        assert_eq!(v["f"]["x"].as_u64(), Some(25));
        assert_eq!(v["f"]["y"].as_f64(), Some(0.5));
        assert_eq!(v["s"].as_str(), Some("id 25"));
        assert_eq!(v["z"].as_str(), Some("007"));
        assert_eq!(v["w"].as_str(), Some("5s"));
        // A string field still gets the text.
        #[derive(serde::Deserialize)]
        struct Key {
            a: String,
        }
        let k: Key = serde_yaml_ng::from_str(&expanded).unwrap();
        assert_eq!(k.a, "25");
        // Text YAML would write back otherwise (a string key must get it as it is, and a
        // file with merge keys is written out again), or no i64/f64 at all: left quoted.
        let src = env(&[
            ("D", "1.50"),
            ("P", "+1"),
            ("T", "True"),
            ("BIG", "12345678901234567890123"),
        ]);
        let text = "d: \"${env:D}\"\np: \"${env:P}\"\nt: \"${env:T}\"\nb: \"${env:BIG}\"\n";
        assert_eq!(
            expand(text, &src).unwrap(),
            "d: \"1.50\"\np: \"+1\"\nt: \"True\"\nb: \"12345678901234567890123\"\n"
        );
    }

    /// Scenario: references nested in references, as the Collector's own tests write
    /// them: a default that is a reference (set and unset), a name that is a reference,
    /// two levels, quoted and unquoted; an unterminated one.
    /// Guarantees: resolved innermost first, as confmap does (a config audit saw the
    /// literal `${env:INNER}` sent as a header, and a duration refused); lines unchanged;
    /// the unterminated one refused.
    #[test]
    fn references_nested_in_references_are_resolved_innermost_first() {
        let src = env(&[("INNER", "x-1"), ("NAMEVAR", "INNER"), ("WAIT", "5s")]);
        let text = "a: \"${env:UNSET_A:-${env:INNER}}\"\nb: ${env:${env:NAMEVAR}}\nc: ${env:UNSET:-${env:ALSO_UNSET:-${env:WAIT}}}\nd: ${env:INNER:-${env:WAIT}}\ne: pre-${env:UNSET:-${env:INNER}}-post\n";
        let expanded = expand(text, &src).unwrap();
        assert_eq!(expanded.lines().count(), 5, "{expanded}");
        let v: serde_yaml_ng::Value = parse_plain_yaml(Path::new("x"), &expanded).unwrap();
        assert_eq!(v["a"].as_str(), Some("x-1"));
        assert_eq!(v["b"].as_str(), Some("x-1"));
        assert_eq!(v["c"].as_str(), Some("5s"));
        assert_eq!(v["d"].as_str(), Some("x-1"));
        assert_eq!(v["e"].as_str(), Some("pre-x-1-post"));
        assert!(expand("a: ${env:A:-${env:B}\n", &src).is_err());
        // `$$` inside is a `$`; an unset inner variable is named as at the top level.
        let v: serde_yaml_ng::Value = parse_plain_yaml(
            Path::new("x"),
            &expand("a: \"${env:UNSET:-$${INNER}}\"\n", &src).unwrap(),
        )
        .unwrap();
        assert_eq!(v["a"].as_str(), Some("${INNER}"));
        let notices = collector_text_lenient("a: ${env:UNSET:-${env:GONE}}\n", &src).notices;
        assert!(
            notices
                .iter()
                .any(|(_, n)| matches!(n, Notice::Unset(name) if name == "GONE")),
            "{notices:?}"
        );
        // Eight levels in all are read; a ninth is refused.
        let nest = |n: usize| {
            let mut r = "${env:WAIT}".to_owned();
            for _ in 1..n {
                r = format!("${{env:UNSET:-{r}}}");
            }
            format!("a: {r}\n")
        };
        assert!(expand(&nest(8), &src).is_ok());
        assert!(expand(&nest(9), &src)
            .unwrap_err()
            .1
            .contains("nested more than 8"));
    }

    /// Scenario: unquoted whole references (`x-api-key: ${env:KEY}`, as vendors' guides
    /// write them) holding numbers YAML writes back otherwise (hex, octal, leading zeros,
    /// a sign, trailing zeros, an exponent, past 64 bits), in a block mapping, a list and a
    /// flow mapping; beside them plain numbers, a boolean and a reference inside text.
    /// Guarantees: a string key gets each as set, as the Collector gives it (a config
    /// audit saw `0x1F` sent as `31` and a 21-digit tenant id refused); through a Value
    /// (a whole Collector config) the text survives for ids (leading zeros, prefixed,
    /// past 64 bits), while numbers a number key may want (`+12`, `1e3`, `1.10`) stay
    /// numbers there; lines are unchanged.
    #[test]
    fn unquoted_whole_references_keep_their_text_where_yaml_would_change_it() {
        // (value, read as text through a Value)
        let cases = [
            ("0x1F", true),
            ("0o17", true),
            ("007", true),
            ("123456789012345678901", true),
            ("25", false),
            ("0.5", false),
            ("abc", true),
            // Forms a number key more likely wants stay numbers (through a Value, a
            // string key gets 12, 1000, 1.1).
            ("+12", false),
            ("1e3", false),
            ("1.10", false),
        ];
        for (value, text_through_value) in cases {
            let vars: &'static [(&str, &str)] = Box::leak(Box::new([("V", value)]));
            let src = env(vars);
            let text =
                "h:\n  x-key: ${env:V}\nl:\n  - ${env:V}\nf: {k: ${env:V}}\ns: id-${env:V}\n";
            let expanded = expand(text, &src).unwrap();
            assert_eq!(expanded.lines().count(), 6, "{expanded}");
            #[derive(serde::Deserialize)]
            struct Texts {
                h: std::collections::BTreeMap<String, String>,
                l: Vec<String>,
                f: std::collections::BTreeMap<String, String>,
                s: String,
            }
            let v: Texts = parse_plain_yaml(Path::new("x"), &expanded).unwrap();
            let via_value: serde_yaml_ng::Value =
                parse_plain_yaml(Path::new("x"), &expanded).unwrap();
            assert_eq!(v.h["x-key"], value, "{value}");
            assert_eq!(v.l[0], value, "{value}");
            assert_eq!(v.f["k"], value, "{value}");
            assert_eq!(v.s, format!("id-{value}"));
            // Read through a Value (as a whole Collector config is): text, but for the
            // numbers that read back as written.
            assert_eq!(
                via_value["h"]["x-key"].is_string(),
                text_through_value,
                "{value}"
            );
        }
        let src = env(&[("B", "true")]);
        let v: serde_yaml_ng::Value =
            parse_plain_yaml(Path::new("x"), &expand("b: ${env:B}\n", &src).unwrap()).unwrap();
        assert_eq!(v["b"].as_bool(), Some(true));
    }

    /// Scenario: a config file without end (`/dev/zero`), a `${file:…}` reference to it
    /// and to a regular file one byte over the bound, and a file just within it.
    /// Guarantees: the endless config and the file over the bound are refused with the
    /// bound named once it is passed (`${file:/dev/zero}` took 6.9 GB in 30 s before); the
    /// device, as a reference, is no regular file; what fits is read whole.
    #[test]
    fn files_past_the_bound_are_refused_not_read_for_ever() {
        // A device or a named pipe is no file to read again at a reload.
        let err = system_source("file", "/dev/zero").unwrap_err();
        assert!(
            err.contains("/dev/zero") && err.contains("not a regular file"),
            "{err}"
        );
        let err = read_text(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
        let dir = crate::test_util::scratch_dir("config-bound").unwrap();
        let fits = dir.join("fits");
        std::fs::write(&fits, vec![b'a'; MAX_FILE_BYTES as usize]).unwrap();
        assert_eq!(read_bounded(&fits).unwrap().len() as u64, MAX_FILE_BYTES);
        std::fs::write(&fits, vec![b'a'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert_eq!(
            read_text(&fits).unwrap_err().kind(),
            std::io::ErrorKind::InvalidData
        );
        let err = system_source("file", fits.to_str().unwrap()).unwrap_err();
        assert!(err.contains("larger than 16 MiB"), "{err}");
    }

    /// Scenario: a file whose references each stay within the bound of a file read and
    /// together pass the bound of an expansion (a hostile check: eight references to one
    /// 16 MiB file took 811 MB to load), on one line and on several.
    /// Guarantees: refused naming the line where the bound was passed.
    #[test]
    fn references_together_are_bounded() {
        let big = "x".repeat(MAX_FILE_BYTES as usize);
        let src = |_: &str, _: &str| -> Result<Option<String>, String> { Ok(Some(big.clone())) };
        let (line, message) =
            expand("a: ok\nb: ${env:A}\nc: ${env:A}\nd: ${env:A}\n", &src).unwrap_err();
        assert_eq!(line, 3, "{message}");
        assert!(message.contains("more than 32 MiB"), "{message}");
        let (line, message) = expand("a: [${env:A}, ${env:A}, ${env:A}]\n", &src).unwrap_err();
        assert_eq!(line, 1, "{message}");
        assert!(message.contains("more than 32 MiB"), "{message}");
        assert!(expand("b: ${env:A}\n", &src).is_ok());
        // Past the bound within a line, no later line is read (a file of many such lines
        // would read 32 MiB each).
        let reads = std::cell::Cell::new(0);
        let counted = |_: &str, _: &str| -> Result<Option<String>, String> {
            reads.set(reads.get() + 1);
            Ok(Some(big.clone()))
        };
        let many = "a: ${env:A}${env:A}${env:A}\n".repeat(5);
        let (line, _) = expand(&many, &counted).unwrap_err();
        assert_eq!((line, reads.get()), (1, 2));
    }

    /// Scenario: a named pipe with no writer where a file read again while running is
    /// expected (a policy file, a certificate, a `${file:…}` reference).
    /// Guarantees: refused at once, not waited on (a pipe moved in place of a policy file
    /// froze a whole gateway: its open waited for a writer on a runtime thread).
    #[test]
    fn a_named_pipe_is_refused_where_a_file_is_read_again() {
        let dir = crate::test_util::scratch_dir("config-fifo").unwrap();
        let fifo = dir.join("fifo");
        crate::test_util::make_fifo(&fifo);
        // On a thread of its own: a read that waits fails the test, not hangs it.
        let (done, read) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let direct = read_regular(&path).map_err(|e| e.kind());
            let referenced = system_source("file", path.to_str().unwrap());
            done.send((direct, referenced)).ok();
        });
        let (direct, referenced) = read
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a read waited on the pipe");
        assert_eq!(direct.unwrap_err(), std::io::ErrorKind::InvalidInput);
        let err = referenced.unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
        // Unblock a reader left behind by a regression, so the test process can end.
        // Without waiting for a reader: with none, the open fails at once.
        use std::os::unix::fs::OpenOptionsExt;
        drop(
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo),
        );
    }

    /// Scenario: a required key left out: of a block, of the file, of a file holding only
    /// comments. Guarantees: named with the block's own line and path (serde said the
    /// block's first child's line, and for a file of comments a line past its end).
    #[test]
    fn a_missing_key_is_named_at_the_block_that_lacks_it() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Otlp {
            endpoint: String,
            #[serde(default)]
            timeout: Option<String>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Export {
            otlp: Otlp,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct File {
            export: Export,
        }
        let err = |text: &str| parse_plain_yaml::<File>(Path::new("g.yaml"), text).unwrap_err();
        match err("# gateway\nexport:\n  otlp:\n    timeout: 5s\n") {
            ConfigError::InvalidAt {
                line, key, message, ..
            } => {
                assert_eq!((line, key.as_str()), (3, "export.otlp"));
                assert!(message.contains("`endpoint` is required"), "{message}");
            }
            other => panic!("{other}"),
        }
        for (text, words) in [
            ("# only a comment\n# and another\n", "holds no settings"),
            ("", "holds no settings"),
            ("exprot: {}\n", "required at the top level"),
        ] {
            let e = err(text).to_string();
            assert!(e.contains(words), "{text:?}: {e}");
            assert!(!e.contains("at line 3"), "{text:?}: {e}");
        }
    }

    /// Scenario: serde messages naming Tailgate's own structs or a "unit value".
    /// Guarantees: they say what the file should hold, not a type name.
    #[test]
    fn parse_errors_speak_of_the_file() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct AndConfig {
            and_sub_policy: Vec<String>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            and: AndConfig,
            pct: f64,
        }
        let err = |text: &str| {
            parse_plain_yaml::<Outer>(Path::new("p.yaml"), text)
                .unwrap_err()
                .to_string()
        };
        let list = err("and: [a, b]\npct: 1\n");
        assert!(list.contains("expected a mapping of settings"), "{list}");
        assert!(!list.contains("AndConfig"), "{list}");
        let empty = err("and: {and_sub_policy: []}\npct:\n");
        assert!(
            empty.contains("an empty value (null, or an unset"),
            "{empty}"
        );
        let quoted = err("and: {and_sub_policy: []}\npct: \"\"\n");
        assert!(
            quoted.contains("an empty string (\"\", or an unset ${env:…} variable in quotes), expected a number"),
            "{quoted}"
        );
        assert_eq!(
            readable("invalid type: sequence, expected struct RawPolicyFile"),
            "the document is a list; a policy file is a mapping: put the list under `policies:`"
        );
        // Rust's number types are named as what to write.
        assert_eq!(
            readable("policies[0].latency.threshold_ms: invalid type: string \"fast\", expected i64 at line 4 column 29"),
            "policies[0].latency.threshold_ms: invalid type: string \"fast\", expected an integer at line 4 column 29"
        );
        assert_eq!(
            readable("pct: invalid type: string \"x\", expected f64"),
            "pct: invalid type: string \"x\", expected a number"
        );
        assert!(readable("x: expected u64 at line 1")
            .contains("expected a whole number (0 or more) at"));
        // Deeper, a struct name is a mapping whatever it is called.
        assert_eq!(
            readable("policies[0]: invalid type: sequence, expected struct RawPolicy at line 2"),
            "policies[0]: invalid type: sequence, expected a mapping of settings (key: value) at line 2"
        );
        // An integer past 2^64, which serde's YAML value cannot hold (a decoder check
        // found the library's wording).
        assert_eq!(
            readable("num_traces: invalid type: integer `18446744073709551616` as u128, expected any YAML value at line 1 column 13"),
            "num_traces: 18446744073709551616 is out of range at line 1 column 13"
        );
    }

    /// A file of several lines, as `${file:}` reads a certificate.
    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";

    /// Scenario: values that YAML would read otherwise if pasted as they are: a secret
    /// starting with `&` (an anchor: no secret at all), one with ` #` (a comment), a PEM
    /// file's lines, quotes and backslashes inside quoted strings.
    /// Guarantees: each is read back as exactly its text; numbers stay numbers; a value
    /// that cannot be quoted where it sits is an error naming the line.
    #[test]
    fn resolved_values_are_read_as_their_text() {
        let src = env(&[
            ("S", "&k2Zq8x"),
            ("C", "k2 #Zq8"),
            ("P", PEM),
            ("Q", "a\"b\\c 'd'"),
            ("N", "5"),
            ("U", "http://host:4317/v1"),
        ]);
        let text = "s: ${env:S}\nc: ${env:C} # note\np: ${env:P}\nd: \"Bearer ${env:Q}\"\nq: 'x ${env:Q}'\nn: ${env:N}\nu: ${env:U}\nl:\n  - ${env:S}\n";
        let expanded = expand(text, &src).unwrap();
        assert_eq!(expanded.lines().count(), 9, "one line per line: {expanded}");
        let v: serde_yaml_ng::Value = parse_plain_yaml(Path::new("x"), &expanded).unwrap();
        assert_eq!(v["s"].as_str(), Some("&k2Zq8x"));
        assert_eq!(v["c"].as_str(), Some("k2 #Zq8"));
        assert_eq!(v["p"].as_str(), Some(PEM));
        assert_eq!(v["d"].as_str(), Some("Bearer a\"b\\c 'd'"));
        assert_eq!(v["q"].as_str(), Some("x a\"b\\c 'd'"));
        assert_eq!(v["n"].as_u64(), Some(5));
        assert_eq!(v["u"].as_str(), Some("http://host:4317/v1"));
        assert_eq!(v["l"][0].as_str(), Some("&k2Zq8x"));
        // A whole item of a flow collection is quoted as a whole value is.
        let flow = expand("a: 1\nl: [${env:S}, b]\n", &src).unwrap();
        let v: serde_yaml_ng::Value = parse_plain_yaml(Path::new("x"), &flow).unwrap();
        assert_eq!(v["l"][0].as_str(), Some("&k2Zq8x"));
        assert_eq!(v["l"][1].as_str(), Some("b"));
        // Part of a flow item: refused, not guessed.
        let err = expand("a: 1\nl: [x${env:S}, b]\n", &src).unwrap_err();
        assert_eq!(err.0, 2, "part of a flow item: refused, not guessed");
        let err = expand("a: 1\nh: Bearer ${env:C}\n", &src).unwrap_err();
        assert_eq!(err.0, 2);
        assert!(err.1.contains("double-quoted value"), "{}", err.1);
    }

    /// Scenario: the Collector's yaml provider as a value (`values: ${yaml:[/a, /b]}`, found
    /// by a user trial: refused as an unsupported scheme), in the wrong places, and the
    /// http provider. Guarantees: as a whole value it reads as the YAML it holds, lines
    /// unchanged; inside a string, a block scalar or a flow it is refused naming the line;
    /// YAML that does not parse is refused; `${https:…}` says why it is not fetched.
    #[test]
    fn yaml_references_read_as_yaml_values() {
        let src = env(&[]);
        // `}` ends a reference, so a flow mapping cannot be written in one (it is cut at
        // its first `}` and does not parse), nor a block one.
        let text = "values: ${yaml:[/checkout, /pay]}  # paths\nlist:\n  - ${yaml:{a: 1, b: x}\n  - ${yaml:3}\nn: 2\n";
        let err = expand(text, &src).unwrap_err();
        assert_eq!(err.0, 3, "{}", err.1);
        let err = expand("a: 1\nk: ${yaml:a: 1}\n", &src).unwrap_err();
        assert_eq!(err.0, 2, "{}", err.1);
        assert!(err.1.contains("does not read the same"), "{}", err.1);
        let text = "values: ${yaml:[/checkout, /pay]}  # paths\nlist:\n  - ${yaml:3}\nn: 2\n";
        let expanded = expand(text, &src).unwrap();
        assert_eq!(expanded.lines().count(), text.lines().count());
        let v: serde_yaml_ng::Value = parse_plain_yaml(Path::new("x"), &expanded).unwrap();
        assert_eq!(v["values"][1].as_str(), Some("/pay"));
        assert_eq!(v["list"][0].as_u64(), Some(3));
        assert_eq!(v["n"].as_u64(), Some(2));
        for (bad, says) in [
            ("a: 1\nb: x-${yaml:[1]}\n", "whole value"),
            ("a: 1\nb: \"${yaml:[1]}\"\n", "whole value"),
            ("a: 1\nb: [${yaml:1}]\n", "whole value"),
            ("b: |\n  ${yaml:[1]}\n", "whole value"),
            ("a: 1\nb: ${yaml:[1, }\n", "is not YAML"),
        ] {
            let err = expand(bad, &src).unwrap_err();
            assert!(err.0 == 2 && err.1.contains(says), "{bad}: {err:?}");
        }
        // In a comment a reference is text, whatever its scheme; in a block scalar `#` is
        // text too, so its references resolve.
        let text = "a: 1 # ${yaml:[x]} ${nope:y} ${env:UNSET}\nk: |\n  x # ${yaml:[1]}\n";
        assert_eq!(expand(text, &src).unwrap_err().0, 3);
        let text = "a: 1 # ${yaml:[x]} ${nope:y}\nb: x#${env:Q} # ${env:Q}\n";
        assert_eq!(
            expand(text, &env(&[("Q", "q")])).unwrap(),
            "a: 1 # ${yaml:[x]} ${nope:y}\nb: x#q # ${env:Q}\n"
        );
        let err = system_source("https", "//example.com/c.yaml").unwrap_err();
        assert!(err.contains("network"), "{err}");
    }

    /// Scenario: references inside longer values, in flow collections, after quotes that
    /// do not open strings, on continued lines, and in block scalars (cases two reviews
    /// found).
    /// Guarantees: a value that reads as its text anywhere is pasted; a special one is
    /// quoted only where it is certainly a whole value, taken as it is in a block scalar,
    /// and refused (naming the line) everywhere else: never silently changed.
    #[test]
    fn references_inside_values_keep_their_text_or_are_refused() {
        let src = env(&[
            ("A", "&abc"),
            ("L", "a,b"),
            ("C", "x #y"),
            ("P", PEM),
            ("Q", "it's"),
            ("T", "a\t#b"),
            ("K", "abc+/9="),
        ]);
        let text = "b: Bearer ${env:K}\nu: admin:${env:K}\nq: 'say ''${env:Q}'''\nk: |\n  ${env:P}\n  tail\nafter: ${env:A}\nlist:\n  - name: x\n    doc: >-\n      ${env:C}\n    key: ${env:A}\nf: [x-${env:K}, y]\nt: ${env:T}\n# - \"a comment\nz: ${env:A}\n";
        let expanded = expand(text, &src).unwrap();
        let v: serde_yaml_ng::Value = parse_plain_yaml(Path::new("x"), &expanded).unwrap();
        assert_eq!(v["b"].as_str(), Some("Bearer abc+/9="));
        assert_eq!(v["u"].as_str(), Some("admin:abc+/9="));
        assert_eq!(v["q"].as_str(), Some("say 'it's'"));
        assert_eq!(v["k"].as_str(), Some(format!("{PEM}\ntail\n").as_str()));
        assert_eq!(v["after"].as_str(), Some("&abc"));
        assert_eq!(v["list"][0]["doc"].as_str(), Some("x #y"));
        assert_eq!(v["list"][0]["key"].as_str(), Some("&abc"));
        assert_eq!(v["f"][0].as_str(), Some("x-abc+/9="));
        assert_eq!(v["t"].as_str(), Some("a\t#b"));
        assert_eq!(v["z"].as_str(), Some("&abc"));
        for bad in [
            "b: Bearer ${env:A}\n",
            "b: ${env:A}-suffix\n",
            "u: admin:${env:C}\n",
            "f: [x-${env:L}]\n",
            "n: it's ${env:C}\n",
            "m: foo - ${env:A}\n",
            "${env:A}x: 1\n",
            "k: first\n  ${env:A}\n",
            "f: [\n  ${env:L},\n  y]\n",
            "h: {\"a\":\"Bearer ${env:A}\"}\n",
            "k: !!str ${env:A}\n",
        ] {
            assert!(expand(bad, &src).is_err(), "{bad:?} must be refused");
        }
    }

    /// Scenario: integers with digit separators, as the Collector's README writes
    /// `sampled_cache_size: 100_000` (Go's yaml.v3 reads them as ints).
    /// Guarantees: plain integers in values; strings, keys and quoted text unchanged.
    #[test]
    fn digit_separators_are_read_as_integers() {
        // `1__0` and `1_` as yaml.v3 reads them (every `_` dropped); `_1` is text there.
        let text = "a: 100_000\nb: [1_000, -2_5]\nc: \"1_000\"\nd: v1_2\n- 3_000 # n\nname: x_1\ne: 1__0\nf: 1_\ng: _1\n";
        assert_eq!(
            plain_integers(text),
            "a: 100000\nb: [1000, -25]\nc: \"1_000\"\nd: v1_2\n- 3000 # n\nname: x_1\ne: 10\nf: 1\ng: _1\n"
        );
        assert_eq!(go_integer_text("_010"), None);
        assert_eq!(go_integer_text("0_10"), Some(8));
        let v: serde_yaml_ng::Value =
            parse_plain_yaml(Path::new("x"), &plain_integers("n: 100_000")).unwrap();
        assert_eq!(v["n"].as_u64(), Some(100_000));
    }

    /// Scenario: numbers as Helm's `toYaml` writes them (`num_traces: 1e+06`): Go's YAML
    /// reads a float and the Collector's decoder takes its whole value for an int key
    /// (found by a user trial: the gateway refused to start on such a rendered config).
    /// Guarantees: whole floats in exponent form become integers, in block and flow values
    /// and after a sign; fractional ones, ones past 2^53, quoted ones, keys, versions and
    /// words are left alone; a float key still reads the same number.
    #[test]
    fn whole_floats_in_exponent_form_are_read_as_integers() {
        let text =
            "a: 1e+06\nb: [2.5E3, -1e2, 1.5e0]\nc: \"1e+06\"\nd: 1.0e+20\ne: v1e2\n- 3e1 # n\n\
                    f: 1e\ng: 1.2.3e4\nh: 1e-3\n1e2: x\ni: 1e+06s\nj: 5e-0\n";
        assert_eq!(
            plain_integers(text),
            "a: 1000000\nb: [2500, -100, 1.5e0]\nc: \"1e+06\"\nd: 1.0e+20\ne: v1e2\n- 30 # n\n\
             f: 1e\ng: 1.2.3e4\nh: 1e-3\n1e2: x\ni: 1e+06s\nj: 5\n"
        );
        // Not whole plain scalars (a review's cases): strings keep their text.
        let strings = "msg: 1e3 errors\nv: \"limit: 1e3 reached\"\nids: 1e3,2e3\na: 1e3#x\nk: |\n  1e3\n  2_000\nq: \"first\n  1e3\"\n# n: 1e3\nm: {1e2: x}\nh: 1e3 # but this one is\n";
        assert_eq!(
            plain_integers(strings),
            strings.replace("h: 1e3 #", "h: 1000 #")
        );
        // Values pasted from the environment are text: a string key gets them as written.
        let text = collector_text(
            Path::new("x"),
            "x-tenant: ${env:T}\nn: 1e+06\n",
            &env(&[("T", "12e4")]),
        )
        .unwrap();
        assert_eq!(text, "x-tenant: 12e4\nn: 1000000\n");
        #[derive(serde::Deserialize)]
        struct Sizes {
            num_traces: usize,
            spans_per_second: i64,
            sampling_percentage: f64,
        }
        let s: Sizes = parse_yaml(
            Path::new("x"),
            "num_traces: 1e+06\nspans_per_second: 2.5e+06\nsampling_percentage: 1e+01\n",
        )
        .unwrap();
        assert_eq!(
            (s.num_traces, s.spans_per_second, s.sampling_percentage),
            (1_000_000, 2_500_000, 10.0)
        );
        assert!(parse_yaml::<Sizes>(
            Path::new("x"),
            "num_traces: 1.5e+00\nspans_per_second: 1\nsampling_percentage: 1\n"
        )
        .is_err());
    }

    /// Scenario: key paths as validation errors name them, in a file with nesting, flow
    /// mappings, sequences, comments and a key repeated at another level (a docs audit
    /// found validation errors without a line).
    /// Guarantees: each is found at its line; a part the text does not hold points at its
    /// parent; a key absent from the top level is not located.
    #[test]
    fn key_paths_are_located_by_line() {
        let text = "receive:\n  grpc: x\n  # max_connections: 1\n  max_connections: 0\nexport:\n  otlp/backend:\n    endpoint: a\n    tls: {ca_file: b}\n\n  \"debug\": {}\nmembers:\n  static:\n    - a\n    - b:1\n  endpoint: z\npeers:\n  static:\n  - c\n  - d\n  dns:\n    endpoint: e\n  endpoint: f\n";
        for (key, line) in [
            ("receive.max_connections", Some(4)),
            ("export.otlp/backend.endpoint", Some(7)),
            ("export.otlp/backend.tls.ca_file", Some(8)),
            ("export.debug", Some(10)),
            ("members.static[1]", Some(14)),
            ("members.endpoint", Some(15)),
            // A sequence written at its key's indent (kubectl's style).
            ("peers.static[1]", Some(19)),
            // A direct child, not a deeper key of the same name before it.
            ("peers.endpoint", Some(22)),
            ("receive.absent", Some(1)),
            ("endpoint", None),
            ("(top level)", None),
        ] {
            assert_eq!(locate_key(text, key), line, "{key}");
        }
        // A key with dots of its own (an exporter named `otlp/tempo.eu`).
        let dotted = "export:\n  otlp/tempo:\n    endpoint: a\n  otlp/tempo.eu:\n    endpoint: b\n";
        assert_eq!(locate_key(dotted, "export.otlp/tempo.eu.endpoint"), Some(5));
        assert_eq!(locate_key(dotted, "export.otlp/tempo.endpoint"), Some(3));
        assert_eq!(locate_key(dotted, "export.otlp/tempo.eu"), Some(4));
        let e = with_line(
            ConfigError::Invalid {
                path: "g.yaml".into(),
                key: "receive.max_connections".into(),
                message: "must be at least 1".into(),
            },
            text,
        );
        assert_eq!(
            e.to_string(),
            "g.yaml:4: receive.max_connections: must be at least 1"
        );
    }

    /// Scenario: the paths of keys on given lines, and keys a translated config's error
    /// names with levels left out.
    /// Guarantees: a block-style key's whole path; none inside a block scalar's text (a
    /// review found `headers.x-multi.token` named); a key with levels left out is named as
    /// written, matched by whole parts (`endpoint` is not `traces_endpoint`).
    #[test]
    fn keys_are_named_by_the_path_written() {
        let text = "exporters:\n  otlp:\n    headers:\n      x-multi: |\n        token: ${env:X}\n    traces_endpoint: x\nreceivers:\n  otlp:\n    protocols:\n      grpc:\n        tls:\n          min_version: x\n";
        assert_eq!(
            path_of_line(text, 4).as_deref(),
            Some("exporters.otlp.headers.x-multi")
        );
        assert_eq!(path_of_line(text, 5), None);
        assert_eq!(
            with_line(
                ConfigError::Invalid {
                    path: "c.yaml".into(),
                    key: "receivers.otlp.tls.min_version".into(),
                    message: "m".into(),
                },
                text
            )
            .to_string(),
            "c.yaml:12: receivers.otlp.protocols.grpc.tls.min_version: m"
        );
        assert_eq!(written_path(text, 6, "exporters.otlp.endpoint"), None);
    }

    /// Scenario: an error naming `retry` where the file writes the Collector's
    /// `retry_on_failure` (one settings struct read under both names).
    /// Guarantees: the key below it is found at its own line and named by the path as
    /// written; a path missing two levels, or its leaf, is not passed over.
    #[test]
    fn one_level_named_otherwise_is_passed_over() {
        let text = "export:\n  otlp:\n    endpoint: http://a:4317\n    retry_on_failure:\n      multiplier: -1\n";
        assert_eq!(locate_key(text, "export.otlp.retry.multiplier"), Some(5));
        assert_eq!(
            written_path(text, 5, "export.otlp.retry.multiplier").as_deref(),
            Some("export.otlp.retry_on_failure.multiplier")
        );
        // Two levels unknown: the block found so far, as before.
        assert_eq!(locate_key(text, "export.otlp.a.b.multiplier"), Some(2));
        assert_eq!(written_path(text, 5, "export.otlp.x.y.multiplier"), None);
    }

    /// Scenario: durations as Tailgate's keys and the Collector blocks read with them
    /// are written. Guarantees: Go's forms (`.5s`, `+5s`, `1m30s`, `0`) and humantime's
    /// longer ones (`2 minutes`) are read; a bare number other than 0 is refused, as
    /// configuration.md says of every file.
    #[test]
    fn durations_read_go_forms_then_longer_ones() {
        use std::time::Duration;
        assert_eq!(duration::parse(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(duration::parse("+5s"), Ok(Duration::from_secs(5)));
        assert_eq!(duration::parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration::parse("0"), Ok(Duration::ZERO));
        assert_eq!(duration::parse("2 minutes"), Ok(Duration::from_secs(120)));
        assert!(duration::parse("5").is_err());
        assert!(duration::parse("-5s").is_err());
    }

    #[test]
    fn sequence_items_are_located_by_line() {
        let text = "a: 1\npolicies:\n  # comment\n  - name: x\n    type: y\n  - name: z\n    sub:\n      - q\n  - {name: w}\nother: 2\n";
        assert_eq!(locate_sequence_item(text, "policies", 0), Some(4));
        assert_eq!(locate_key(text, "policies[1]"), Some(6));
        assert_eq!(locate_sequence_item(text, "policies", 1), Some(6));
        assert_eq!(locate_sequence_item(text, "policies", 2), Some(9));
        assert_eq!(locate_sequence_item(text, "policies", 3), None);
        // Into an item, and into a sequence inside it.
        assert_eq!(locate_key(text, "policies[0].type"), Some(5));
        assert_eq!(locate_key(text, "policies[1].sub[0]"), Some(8));
        assert_eq!(locate_key(text, "policies[1].name"), Some(6));
        // A flow item holds its keys on its own line.
        assert_eq!(locate_key(text, "policies[2].name"), Some(9));
        let nested = "policies:\n  - name: a\n    and:\n      and_sub_policy:\n        - {name: ok}\n        - name: 7\n          type: t\n";
        assert_eq!(
            locate_key(nested, "policies[0].and.and_sub_policy[1].type"),
            Some(7)
        );
        assert_eq!(
            locate_key(nested, "policies[0].and.and_sub_policy[1].name"),
            Some(6)
        );
        assert_eq!(
            locate_sequence_item("policies: [a, b]\n", "policies", 0),
            None
        );
    }
}
