//! Times and durations as OTTL's Go values behave: a time is nanoseconds since the Unix
//! epoch in UTC (pdata's timestamps, `Now()`, `Unix(…)`), a duration is nanoseconds in an
//! `i64` (Go's `time.Duration`). The evaluator calls these; they know nothing of spans.
//!
//! Calendar fields are read in UTC: pdata's `AsTime` gives UTC; `Now()` and `Unix(…)` give
//! the local time of the Collector's process, which is UTC in the containers it usually
//! runs in.

/// Nanoseconds in a microsecond.
pub const MICROSECOND: i64 = 1_000;
/// Nanoseconds in a millisecond.
pub const MILLISECOND: i64 = 1_000_000;
/// Nanoseconds in a second.
pub const SECOND: i64 = 1_000_000_000;
/// Nanoseconds in a minute.
pub const MINUTE: i64 = 60 * SECOND;
/// Nanoseconds in an hour.
pub const HOUR: i64 = 60 * MINUTE;
/// Nanoseconds in a day.
const DAY: i128 = 24 * HOUR as i128;
/// Nanoseconds from Go's zero time (January 1 of year 1, UTC) to the Unix epoch, the
/// origin `Truncate` counts multiples from.
const ZERO_TO_EPOCH: i128 = 62_135_596_800 * SECOND as i128;

/// Go's `time.ParseDuration`: an optional sign, then one or more decimal numbers, each
/// with an optional fraction and a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), or
/// `0` alone; the same values and overflow limits, and Go's messages (quoting aside). One
/// departure: a sum of parts past 2⁶³ ns is an error here, where Go's unsigned sum wraps.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let mut s = text;
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        (neg, s) = (true, rest);
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !s.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        // The whole part.
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let pre = digits > 0;
        let mut v: u64 = 0;
        for b in s[..digits].bytes() {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(b - b'0')))
                .filter(|&v| v <= 1 << 63)
                .ok_or_else(invalid)?;
        }
        s = &s[digits..];
        // The fraction: digits past what fits are ignored, as Go does.
        let (mut frac, mut scale, mut post) = (0u64, 1f64, false);
        if let Some(rest) = s.strip_prefix('.') {
            s = rest;
            let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            post = digits > 0;
            let mut overflow = false;
            for b in s[..digits].bytes() {
                if overflow {
                    continue;
                }
                match frac
                    .checked_mul(10)
                    .and_then(|f| f.checked_add(u64::from(b - b'0')))
                    .filter(|&f| f <= 1 << 63)
                {
                    Some(f) => {
                        frac = f;
                        scale *= 10.0;
                    }
                    None => overflow = true,
                }
            }
            s = &s[digits..];
        }
        if !pre && !post {
            return Err(invalid());
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        let (unit, rest) = s.split_at(unit_len);
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {text:?}"));
        }
        let unit: u64 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => SECOND as u64,
            "m" => MINUTE as u64,
            "h" => HOUR as u64,
            _ => return Err(format!("time: unknown unit {unit:?} in duration {text:?}")),
        };
        s = rest;
        if v > (1 << 63) / unit {
            return Err(invalid());
        }
        v *= unit;
        if frac > 0 {
            // Go: float64 arithmetic, then truncated to an integer.
            v = v
                .checked_add((frac as f64 * (unit as f64 / scale)) as u64)
                .filter(|&v| v <= 1 << 63)
                .ok_or_else(invalid)?;
        }
        total = total
            .checked_add(v)
            .filter(|&t| t <= 1 << 63)
            .ok_or_else(invalid)?;
    }
    if neg {
        return Ok((total as i128).wrapping_neg() as i64);
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// `t - u` as Go's `Time.Sub`: the duration, saturated at the `i64` range.
pub fn sub(t: i128, u: i128) -> i64 {
    (t - u).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Go's `Time.Truncate(d)`: rounded down to a multiple of `d` since Go's zero time; `t`
/// unchanged for `d <= 0`.
pub fn truncate(t: i128, d: i64) -> i128 {
    if d <= 0 {
        return t;
    }
    t - (t + ZERO_TO_EPOCH).rem_euclid(i128::from(d))
}

/// A time's date and time of day in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// The year (proleptic Gregorian).
    pub year: i64,
    /// 1 to 12.
    pub month: i64,
    /// 1 to 31.
    pub day: i64,
    /// 0 to 23.
    pub hour: i64,
    /// 0 to 59.
    pub minute: i64,
    /// 0 to 59.
    pub second: i64,
    /// 0 to 999,999,999.
    pub nanosecond: i64,
    /// 0 (Sunday) to 6, as Go's `Weekday`.
    pub weekday: i64,
}

/// The calendar fields of `t` (nanoseconds since the epoch), in UTC.
pub fn civil(t: i128) -> Civil {
    let days = t.div_euclid(DAY);
    let of_day = t.rem_euclid(DAY) as i64;
    // Days to a date, by the era arithmetic of the proleptic Gregorian calendar
    // (eras of 400 years starting on March 1).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i128::from(month <= 2);
    Civil {
        year: year as i64,
        month: month as i64,
        day: day as i64,
        hour: of_day / HOUR,
        minute: of_day % HOUR / MINUTE,
        second: of_day % MINUTE / SECOND,
        nanosecond: of_day % SECOND,
        // 1970-01-01 was a Thursday.
        weekday: (days + 4).rem_euclid(7) as i64,
    }
}

/// `t` as Go's `json.Marshal` writes a UTC time (RFC 3339 with nanoseconds, trailing
/// zeros of the fraction dropped, in quotes), or `None` outside years 0 to 9999, which
/// Go refuses to marshal.
pub fn json(t: i128) -> Option<String> {
    let c = civil(t);
    if !(0..=9999).contains(&c.year) {
        return None;
    }
    let mut out = format!(
        "\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    );
    if c.nanosecond > 0 {
        let frac = format!("{:09}", c.nanosecond);
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push_str("Z\"");
    Some(out)
}

/// Nanoseconds since the epoch of a `Unix(seconds, nanoseconds)` pair, as Go's
/// `time.Unix` (the nanoseconds may be outside [0, 1e9)).
pub fn unix(seconds: i64, nanos: i64) -> i128 {
    i128::from(seconds) * i128::from(SECOND) + i128::from(nanos)
}

/// `t.Unix()`, `UnixMilli()`, `UnixMicro()` or `UnixNano()`: whole units since the epoch,
/// rounded down, in Go's `int64` (wrapping as Go's arithmetic does outside its range).
pub fn unix_in(t: i128, unit_nanos: i64) -> i64 {
    t.div_euclid(i128::from(unit_nanos)) as i64
}

/// A duration in whole `unit_nanos` (`Milliseconds()`, `Microseconds()`), truncated
/// toward zero as Go's integer division.
pub fn whole(d: i64, unit_nanos: i64) -> i64 {
    d / unit_nanos
}

/// A duration in `unit_nanos` as a float, as Go's `Seconds()`, `Minutes()`, `Hours()`:
/// whole units plus the remainder's fraction.
pub fn fractional(d: i64, unit_nanos: i64) -> f64 {
    (d / unit_nanos) as f64 + (d % unit_nanos) as f64 / unit_nanos as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: durations Go reads and refuses (its own time package's tests).
    /// Guarantees: the same value or an error.
    #[test]
    fn durations_parse_as_go() {
        for (text, want) in [
            ("0", 0),
            ("5s", 5_000_000_000),
            ("-5s", -5_000_000_000),
            ("+5s", 5_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("1h15m30.918273645s", 4_530_918_273_645),
            ("300ms", 300_000_000),
            ("1µs", 1_000),
            ("1μs", 1_000),
            ("1us", 1_000),
            (".5s", 500_000_000),
            ("5.s", 5_000_000_000),
            ("0.100000000000000000000h", 360_000_000_000),
            ("9223372036854775807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("9223372036.854775807s", i64::MAX),
            ("-2562047h47m16.854775808s", i64::MIN),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for text in [
            "",
            "1",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "3000000h",
            "9223372036854775808ns",
            "1d",
            "5 s",
            "1.5.s",
        ] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        assert_eq!(
            parse_duration("1"),
            Err("time: missing unit in duration \"1\"".into())
        );
        assert_eq!(
            parse_duration("1d"),
            Err("time: unknown unit \"d\" in duration \"1d\"".into())
        );
    }

    /// Scenario: calendar fields of known instants, before and after the epoch.
    /// Guarantees: the date Go's `time` gives in UTC.
    #[test]
    fn calendar_fields_are_utc_dates() {
        // 2023-03-14T15:09:26.535897932Z, a Tuesday.
        let t = unix(1_678_806_566, 535_897_932);
        let c = civil(t);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second),
            (2023, 3, 14, 15, 9, 26)
        );
        assert_eq!((c.nanosecond, c.weekday), (535_897_932, 2));
        assert_eq!(
            json(t).as_deref(),
            Some("\"2023-03-14T15:09:26.535897932Z\"")
        );
        // 2024-02-29 (a leap day), exactly midnight: no fraction.
        assert_eq!(
            json(unix(1_709_164_800, 0)).as_deref(),
            Some("\"2024-02-29T00:00:00Z\"")
        );
        // One nanosecond before the epoch: 1969-12-31T23:59:59.999999999, a Wednesday.
        let c = civil(-1);
        assert_eq!((c.year, c.month, c.day, c.hour), (1969, 12, 31, 23));
        assert_eq!((c.nanosecond, c.weekday), (999_999_999, 3));
        assert_eq!(json(unix(300_000_000_000, 0)), None);
    }

    /// Scenario: Truncate, Unix* and duration units on values either side of zero.
    /// Guarantees: Go's rounding (down for times, toward zero for whole duration units).
    #[test]
    fn units_round_as_go() {
        let t = unix(1_678_806_566, 535_897_932);
        assert_eq!(truncate(t, HOUR), unix(1_678_806_000, 0));
        assert_eq!(truncate(t, 0), t);
        // Weeks count from Go's zero time (a Monday), not the epoch (a Thursday).
        let c = civil(truncate(t, 7 * 24 * HOUR));
        assert_eq!((c.weekday, c.day), (1, 13));
        assert_eq!(unix_in(-1, SECOND), -1);
        assert_eq!(unix_in(t, 1_000_000), 1_678_806_566_535);
        assert_eq!(whole(-1_500_000, 1_000_000), -1);
        assert_eq!(fractional(90 * 1_000_000_000, MINUTE), 1.5);
        assert_eq!(sub(i128::MAX / 2, 0), i64::MAX);
    }
}
