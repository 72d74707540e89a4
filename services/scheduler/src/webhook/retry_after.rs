//! `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How long the receiver asked us to wait, measured from `now`. `None` when the value is
/// neither form (it is then ignored); a date in the past means no wait.
pub fn parse(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long numbers saturate; the schedule's end bounds them anyway.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = http_date(value)?;
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// An HTTP-date: IMF-fixdate, or the obsolete RFC 850 and asctime forms every recipient
/// must still accept (RFC 9110 §5.6.7). Other date syntaxes — numeric zones, a missing
/// weekday, a wrong one — are not HTTP-dates. RFC 850's two-digit years are read as
/// 1970–2069.
fn http_date(value: &str) -> Option<DateTime<Utc>> {
    httpdate::parse_http_date(value).ok().map(DateTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap()
    }

    #[test]
    fn seconds() {
        assert_eq!(parse("120", now()), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 0 ", now()), Some(Duration::ZERO));
        assert_eq!(
            parse("99999999999999999999999", now()),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        let in_90s = Some(Duration::from_secs(90));
        assert_eq!(parse("Sat, 28 Nov 2026 10:01:30 GMT", now()), in_90s);
        assert_eq!(parse("Saturday, 28-Nov-26 10:01:30 GMT", now()), in_90s);
        assert_eq!(parse("Sat Nov 28 10:01:30 2026", now()), in_90s);
        assert_eq!(
            parse("Sun Nov  1 10:00:00 2026", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse("Sat, 28 Nov 2026 09:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn dates_rfc_2822_allows_but_http_does_not_are_ignored() {
        for v in [
            "Sat, 28 Nov 2026 10:01:30 +0000",
            "28 Nov 2026 10:01:30 GMT",
            "Sat, 28 Nov 2026 10:01:30 UT",
            "Sat, 28 Nov 2026 10:01 GMT",
            "Sat, 28 Nov 26 10:01:30 GMT",
        ] {
            assert!(
                DateTime::parse_from_rfc2822(v).is_ok(),
                "{v:?} is an RFC 2822 date"
            );
            assert_eq!(parse(v, now()), None, "{v:?}");
        }
    }

    #[test]
    fn garbage_is_ignored() {
        for v in [
            "",
            "-5",
            "1.5",
            "soon",
            "Sat, 99 Nov 2026 10:01:30 GMT",
            "Sun, 28 Nov 2026 10:01:30 GMT",
        ] {
            assert_eq!(parse(v, now()), None, "{v:?}");
        }
    }
}
