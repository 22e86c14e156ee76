//! Wall-clock helpers: Unix seconds and the ISO 8601 UTC timestamps IoT Hub writes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// How long from now until the Unix second `expiry` begins (zero once it has): a SAS token's
/// `se` is the moment the hub ends the connection that presented it.
pub fn until_unix(expiry: u64) -> Duration {
    (UNIX_EPOCH + Duration::from_secs(expiry))
        .duration_since(SystemTime::now())
        .unwrap_or_default()
}

/// The current time as `YYYY-MM-DDTHH:MM:SS.fffffffZ` (IoT Hub's 7 fractional digits).
pub fn iso_now() -> String {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    iso8601(elapsed.as_secs(), elapsed.subsec_nanos())
}

/// Formats Unix seconds + nanoseconds as ISO 8601 UTC with 7 fractional digits.
pub fn iso8601(secs: u64, nanos: u32) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:07}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        nanos / 100
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(iso8601(0, 0), "1970-01-01T00:00:00.0000000Z");
        assert_eq!(
            iso8601(1_709_251_199, 123_456_789),
            "2024-02-29T23:59:59.1234567Z"
        );
        assert_eq!(iso8601(1_795_500_000, 0), "2026-11-24T06:00:00.0000000Z");
    }
}
