//! Converters that compute a new value from one string or bytes value: the hashes (`MD5`,
//! `SHA1`, `SHA256`, `SHA512`, `FNV`, `Murmur3Hash`, `Murmur3Hash128`, `XXH3`, `XXH128`),
//! and the word casing of the Go library pkg/ottl uses (`github.com/iancoleman/strcase`
//! v0.3.0) for `ToSnakeCase`, `ToCamelCase` and the names of named arguments.
//!
//! Called by [`super::eval`] with the argument already read and type-checked; each
//! returns what pkg/ottl's function returns, in the same text form.

use std::hash::Hasher as _;

use sha2::Digest as _;

/// Which hash a hash converter computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    /// `MD5(s)`: lower-case hex.
    Md5,
    /// `SHA1(s)`: lower-case hex.
    Sha1,
    /// `SHA256(s)`: lower-case hex.
    Sha256,
    /// `SHA512(s)`: lower-case hex.
    Sha512,
    /// `FNV(s)`: FNV-1a, 64 bits, as a (signed) int.
    Fnv,
    /// `Murmur3Hash(s)`: x86 32-bit MurmurHash3, seed 0, its little-endian bytes in hex.
    Murmur3,
    /// `Murmur3Hash128(s)`: x64 128-bit MurmurHash3, seed 0, the first half's little-endian
    /// bytes then the second's, in hex.
    Murmur3x128,
    /// `XXH3(s)`: 64-bit XXH3, seed 0, its big-endian bytes in hex.
    Xxh3,
    /// `XXH128(s)`: 128-bit XXH3, its big-endian bytes in hex.
    Xxh128,
}

/// What a hash converter returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hashed {
    /// A lower-case hex string.
    Hex(String),
    /// An int (`FNV`).
    Int(i64),
}

/// `kind` of `data`, as pkg/ottl's converter of that name returns it.
pub fn hash(kind: HashKind, data: &[u8]) -> Hashed {
    let hex = |b: &[u8]| Hashed::Hex(hex(b));
    match kind {
        HashKind::Md5 => hex(&md5::Md5::digest(data)),
        HashKind::Sha1 => hex(&sha1::Sha1::digest(data)),
        HashKind::Sha256 => hex(&sha2::Sha256::digest(data)),
        HashKind::Sha512 => hex(&sha2::Sha512::digest(data)),
        HashKind::Fnv => {
            let mut h = fnv::FnvHasher::default();
            h.write(data);
            // Go's `int64(hash.Sum64())`: the same bits, signed.
            Hashed::Int(h.finish() as i64)
        }
        // Reading from a slice cannot fail.
        HashKind::Murmur3 => hex(&murmur3::murmur3_32(&mut &data[..], 0)
            .unwrap_or_default()
            .to_le_bytes()),
        // The crate's u128 is the second half above the first: its little-endian bytes
        // are the first half's, then the second's.
        HashKind::Murmur3x128 => hex(&murmur3::murmur3_x64_128(&mut &data[..], 0)
            .unwrap_or_default()
            .to_le_bytes()),
        HashKind::Xxh3 => hex(&xxhash_rust::xxh3::xxh3_64(data).to_be_bytes()),
        HashKind::Xxh128 => hex(&xxhash_rust::xxh3::xxh3_128(data).to_be_bytes()),
    }
}

/// Bytes in lower-case hex, as Go's `hex.EncodeToString`.
pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            write!(s, "{x:02x}").ok();
            s
        })
}

/// strcase's `ToCamel`: words split at `_`, `-`, `.` and spaces (which are dropped with
/// every other byte that is not an ASCII letter or digit, multi-byte characters included),
/// each word's first letter and a letter after a digit upper-cased, a capital after a
/// capital lowered (`ID` is `Id`). `utf8_safe` is `Utf8Safe`.
pub fn camel_case(s: &[u8]) -> Vec<u8> {
    let s = trim_space(s);
    let mut out = Vec::with_capacity(s.len());
    let mut cap_next = true;
    let mut prev_cap = false;
    for &b in s {
        let is_cap = b.is_ascii_uppercase();
        let c = if cap_next {
            b.to_ascii_uppercase()
        } else if prev_cap && is_cap {
            b.to_ascii_lowercase()
        } else {
            b
        };
        prev_cap = is_cap;
        if c.is_ascii_alphabetic() {
            out.push(c);
            cap_next = false;
        } else if c.is_ascii_digit() {
            out.push(c);
            cap_next = true;
        } else {
            cap_next = matches!(c, b'_' | b' ' | b'-' | b'.');
        }
    }
    out
}

/// strcase's `ToSnake`: ASCII letters lowered, `_` between a lower-case letter or digit and
/// a capital or digit that follows, before the capital that starts a word after a run of
/// capitals (`JSONData` is `json_data`), and between a digit and a letter; spaces, `-` and
/// `.` become `_` (runs kept: `a--b` is `a__b`); other bytes are kept.
pub fn snake_case(s: &[u8]) -> Vec<u8> {
    let s = trim_space(s);
    let mut out = Vec::with_capacity(s.len() + s.len() / 4);
    for (i, &b) in s.iter().enumerate() {
        let (is_cap, is_low, is_num) = (
            b.is_ascii_uppercase(),
            b.is_ascii_lowercase(),
            b.is_ascii_digit(),
        );
        let v = b.to_ascii_lowercase();
        if let Some(&next) = s.get(i + 1) {
            let (next_cap, next_low, next_num) = (
                next.is_ascii_uppercase(),
                next.is_ascii_lowercase(),
                next.is_ascii_digit(),
            );
            if (is_cap && (next_low || next_num))
                || (is_low && (next_cap || next_num))
                || (is_num && (next_cap || next_low))
            {
                if is_cap && next_low && i > 0 && s[i - 1].is_ascii_uppercase() {
                    out.push(b'_');
                }
                out.push(v);
                if is_low || is_num || next_num {
                    out.push(b'_');
                }
                continue;
            }
        }
        out.push(if matches!(v, b' ' | b'_' | b'-' | b'.') {
            b'_'
        } else {
            v
        });
    }
    out
}

/// Go's `strings.TrimSpace` on bytes of (usually) UTF-8.
fn trim_space(s: &[u8]) -> &[u8] {
    match std::str::from_utf8(s) {
        Ok(text) => text.trim().as_bytes(),
        Err(_) => s.trim_ascii(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_of(kind: HashKind, s: &str) -> String {
        match hash(kind, s.as_bytes()) {
            Hashed::Hex(h) => h,
            Hashed::Int(i) => panic!("{kind:?} gave an int {i}"),
        }
    }

    /// Scenario: each hash of pkg/ottl's test inputs (`func_md5_test.go` …
    /// `func_xxh128_test.go`).
    /// Guarantees: the same text (hex, byte order) or int as the Collector's converter.
    #[test]
    fn hashes_match_ottl() {
        use HashKind::*;
        for (kind, input, want) in [
            (Md5, "hello world", "5eb63bbbe01eeed093cb22bb8f5acdc3"),
            (Md5, "", "d41d8cd98f00b204e9800998ecf8427e"),
            (Sha1, "hello world", "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed"),
            (Sha1, "", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            (
                Sha256,
                "hello world",
                "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
            ),
            (
                Sha256,
                "",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                Sha512,
                "",
                "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
            ),
            (
                Sha512,
                "foo bar",
                "65019286222ace418f742556366f9b9da5aaf6797527d2f0cba5bfe6b2f8ed24746542a0f2be1da8d63c2477f688b608eb53628993afa624f378b03f10090ce7",
            ),
            (Murmur3, "Hello World", "ce837619"),
            (Murmur3, "", "00000000"),
            // Longer than a block: MurmurHash3's published x86_32 value 0x2e4ff723.
            (
                Murmur3,
                "The quick brown fox jumps over the lazy dog",
                "23f74f2e",
            ),
            (Murmur3x128, "Hello World", "dbc2a0c1ab26631a27b4c09fcf1fe683"),
            (Murmur3x128, "", "00000000000000000000000000000000"),
            (Xxh3, "hello world", "d447b1ea40e6988b"),
            (Xxh3, "", "2d06800538d394c2"),
            (Xxh128, "hello world", "df8d09e93f874900a99b8775cc15b6c7"),
            (Xxh128, "", "99aa06d3014798d86001c324468d497f"),
        ] {
            assert_eq!(hex_of(kind, input), want, "{kind:?}({input:?})");
        }
        assert_eq!(hash(Fnv, b"hello world"), Hashed::Int(8618312879776256743));
        assert_eq!(hash(Fnv, b""), Hashed::Int(-3750763034362895579));
    }

    /// Scenario: strcase v0.3.0's own test inputs and pkg/ottl's (`func_to_snake_case_test.go`,
    /// `func_to_camel_case_test.go`), acronyms, digits, separators.
    /// Guarantees: the same words as the Go library.
    #[test]
    fn word_casing_matches_strcase() {
        let snake = |s: &str| String::from_utf8(snake_case(s.as_bytes())).unwrap();
        for (input, want) in [
            ("simpleString", "simple_string"),
            ("simple_string", "simple_string"),
            ("CPUUtilizationMetric", "cpu_utilization_metric"),
            ("simple-string", "simple_string"),
            ("", ""),
            ("testCase", "test_case"),
            ("TestCase", "test_case"),
            ("Test Case", "test_case"),
            (" Test Case ", "test_case"),
            ("test", "test"),
            ("Test", "test"),
            ("ManyManyWords", "many_many_words"),
            ("AnyKind of_string", "any_kind_of_string"),
            ("numbers2and55with000", "numbers_2_and_55_with_000"),
            ("JSONData", "json_data"),
            ("userID", "user_id"),
            ("AAAbbb", "aa_abbb"),
            ("1A2", "1_a_2"),
            ("A1B", "a_1_b"),
            ("A1A2A3", "a_1_a_2_a_3"),
            ("A1 A2 A3", "a_1_a_2_a_3"),
            ("AB1AB2AB3", "ab_1_ab_2_ab_3"),
            (" some string", "some_string"),
            ("test-case", "test_case"),
            ("a--b", "a__b"),
            ("héllo Wörld", "héllo_wörld"),
        ] {
            assert_eq!(snake(input), want, "ToSnakeCase({input:?})");
        }
        let camel = |s: &str| String::from_utf8(camel_case(s.as_bytes())).unwrap();
        for (input, want) in [
            ("simple_string", "SimpleString"),
            ("SimpleString", "SimpleString"),
            ("simple-string", "SimpleString"),
            ("", ""),
            ("test_case", "TestCase"),
            ("test.case", "TestCase"),
            ("test", "Test"),
            (" test  case ", "TestCase"),
            ("many_many_words", "ManyManyWords"),
            ("AnyKind of_string", "AnyKindOfString"),
            ("odd-fix", "OddFix"),
            ("numbers2And55with000", "Numbers2And55With000"),
            ("ID", "Id"),
            ("utf8_safe", "Utf8Safe"),
            ("toCASE", "ToCase"),
            ("héllo", "Hllo"),
        ] {
            assert_eq!(camel(input), want, "ToCamelCase({input:?})");
        }
    }
}
