//! Wall-clock helpers: RFC 3339 timestamps on the wire, milliseconds in storage.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The current UTC time as RFC 3339 with millisecond precision (`2026-11-26T06:36:39.123Z`).
pub fn now_rfc3339() -> String {
    ms_to_rfc3339(now_ms())
}

/// A time in milliseconds since the Unix epoch as RFC 3339 (UTC, millisecond precision).
///
/// Written out by hand: every status change carries a timestamp, and a general formatter
/// (`time`'s format descriptions) cost about 1,400 instructions per call on that path.
pub fn ms_to_rfc3339(ms: u64) -> String {
    let (days, ms_of_day) = (ms / 86_400_000, ms % 86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second, milli) =
        (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1000 % 60, ms_of_day % 1000);
    let mut out = String::with_capacity(24);
    let mut push = |value: u64, digits: u32, after: char| {
        for i in (0..digits).rev() {
            out.push(char::from(b'0' + (value / 10u64.pow(i) % 10) as u8));
        }
        out.push(after);
    };
    push(year, 4, '-');
    push(month, 2, '-');
    push(day, 2, 'T');
    push(hour, 2, ':');
    push(minute, 2, ':');
    push(second, 2, '.');
    push(milli, 3, 'Z');
    out
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01: Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A duration the way the command line spells it: `30s`, `1m`, `2h`, `500ms`.
pub fn format_duration(duration: std::time::Duration) -> String {
    let ms = duration.as_millis() as u64;
    match ms {
        0 => "0s".into(),
        ms if ms % 86_400_000 == 0 => format!("{}d", ms / 86_400_000),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::ms_to_rfc3339;

    /// The same text as `time`'s formatter, across leap years, century rules and day ends.
    #[test]
    fn formats_like_a_general_formatter() {
        let format =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
        let mut ms: u64 = 0;
        let fixed = [0, 951_782_400_000, 951_868_799_999, 4_107_542_399_999, 1_795_000_000_123, 253_402_300_799_999];
        for at in fixed
            .into_iter()
            .chain(std::iter::from_fn(|| {
                ms = ms.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                Some(ms % 253_402_300_800_000)
            }))
            .take(20_000)
        {
            let expected = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)
                .unwrap()
                .format(&format)
                .unwrap();
            assert_eq!(ms_to_rfc3339(at), expected, "at {at} ms");
        }
    }
}
