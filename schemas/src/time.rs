//! UTC calendar arithmetic on epoch milliseconds, without a time-zone database: the warehouse's
//! `dt=`/`hour=` partitions and the rollups' `@timestamp` and daily index names.
//!
//! ```
//! use qoe_schemas::time::{date_hour, parse_date, rfc3339_utc};
//! assert_eq!(date_hour(1_763_800_000_000), ("2025-11-22".to_string(), 8));
//! assert_eq!(parse_date("2025-11-22"), Some(1_763_769_600_000));
//! assert_eq!(rfc3339_utc(1_763_800_020_000), "2025-11-22T08:27:00Z");
//! ```

/// Milliseconds in an hour.
pub const HOUR_MS: i64 = 3_600_000;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC date (`YYYY-MM-DD`) and hour of an epoch-ms time.
pub fn date_hour(time_ms: i64) -> (String, i64) {
    let days = time_ms.div_euclid(DAY_MS);
    let hour = time_ms.rem_euclid(DAY_MS) / HOUR_MS;
    let (year, month, day) = civil_from_days(days);
    (format!("{year:04}-{month:02}-{day:02}"), hour)
}

/// Parses `YYYY-MM-DD` to the epoch ms of its UTC midnight.
pub fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: i64 = parts.next()?.parse().ok()?;
    let day: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || text.len() != 10 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    (civil_from_days(days) == (year, month, day)).then_some(days * DAY_MS)
}

/// An epoch-ms time as RFC 3339 in UTC: `YYYY-MM-DDTHH:MM:SSZ`, with `.mmm` only when the
/// milliseconds are not zero.
pub fn rfc3339_utc(time_ms: i64) -> String {
    let (date, hour) = date_hour(time_ms);
    let in_hour = time_ms.rem_euclid(HOUR_MS);
    let (minute, second, milli) = (in_hour / 60_000, in_hour % 60_000 / 1000, in_hour % 1000);
    if milli == 0 {
        format!("{date}T{hour:02}:{minute:02}:{second:02}Z")
    } else {
        format!("{date}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
    }
}

/// Parses what [`rfc3339_utc`] writes (`YYYY-MM-DDTHH:MM:SSZ`, optionally `.mmm` before the `Z`)
/// to epoch ms; anything else (another offset, a missing `Z`) is `None`.
pub fn parse_rfc3339_utc(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[10] != b'T' || bytes[13] != b':' || bytes[16] != b':' || !text.ends_with('Z') {
        return None;
    }
    let day = parse_date(&text[..10])?;
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|byte| byte.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let milli = match text.len() {
        20 => 0,
        24 if bytes[19] == b'.' => number(20..23)?,
        _ => return None,
    };
    Some(day + ((hour * 60 + minute) * 60 + second) * 1000 + milli)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_match_known_values() {
        assert_eq!(date_hour(0), ("1970-01-01".to_string(), 0));
        assert_eq!(date_hour(1_763_800_000_000), ("2025-11-22".to_string(), 8));
        assert_eq!(date_hour(951_782_400_000), ("2000-02-29".to_string(), 0));
        for day in (-1_000..40_000).step_by(7) {
            let ms = day * DAY_MS + 5 * HOUR_MS;
            let (date, hour) = date_hour(ms);
            assert_eq!(hour, 5);
            assert_eq!(parse_date(&date), Some(day * DAY_MS));
        }
        assert_eq!(parse_date("2026-02-30"), None);
        assert_eq!(parse_date("2026-1-01"), None);
    }

    #[test]
    fn rfc3339_matches_known_values() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_763_800_000_123), "2025-11-22T08:26:40.123Z");
        assert_eq!(rfc3339_utc(951_868_799_000), "2000-02-29T23:59:59Z");
        for time_ms in [0, 1_763_800_000_123, 951_868_799_000, -86_399_999] {
            assert_eq!(parse_rfc3339_utc(&rfc3339_utc(time_ms)), Some(time_ms));
        }
        for bad in [
            "2026-11-20T09:31:00",
            "2026-11-20T09:31:00+01:00",
            "2026-11-20T24:00:00Z",
            "2026-11-20T09:31:00.5Z",
            "2026-11-20 09:31:00Z",
        ] {
            assert_eq!(parse_rfc3339_utc(bad), None, "{bad}");
        }
    }
}
