//! Keyset-paged lists (the feed, undelivered webhooks, the console's job list): a page's
//! size, where the previous page stopped (an opaque cursor), and the times and limits
//! their query parameters carry.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use foodseg_engine::store::Cursor;
use uuid::Uuid;

use crate::error::ApiError;

/// Jobs per page unless `limit` says otherwise, and the most `limit` may ask for.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// One page of a keyset-paged list: its size (`limit`, default [`DEFAULT_LIMIT`]) and
/// where the previous page stopped (`after`, a cursor this api returned).
pub struct Page {
    pub limit: i64,
    pub cursor: Option<Cursor>,
    after: Option<String>,
}

impl Page {
    pub fn parse(limit: Option<String>, after: Option<String>) -> Result<Self, ApiError> {
        Ok(Page {
            limit: limit
                .map(|l| parse_limit(&l))
                .transpose()?
                .unwrap_or(DEFAULT_LIMIT),
            cursor: after.as_deref().map(decode_cursor).transpose()?,
            after,
        })
    }

    /// The cursor to read on from (after the last row, or the one given when the page is
    /// empty) and whether the page was full.
    pub fn next<T>(self, rows: &[T], cursor_of: impl Fn(&T) -> Cursor) -> (Option<String>, bool) {
        let cursor = rows
            .last()
            .map(|row| encode_cursor(cursor_of(row)))
            .or(self.after);
        (cursor, rows.len() as i64 == self.limit)
    }
}

/// An RFC 3339 time.
pub fn parse_time(param: &'static str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ApiError::InvalidParameter {
            param,
            reason: format!("must be an RFC 3339 time such as 2026-01-31T00:00:00Z: {e}"),
        })
}

/// A page size from 1 to [`MAX_LIMIT`].
pub fn parse_limit(raw: &str) -> Result<i64, ApiError> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| ApiError::InvalidParameter {
            param: "limit",
            reason: format!("must be a whole number from 1 to {MAX_LIMIT}"),
        })
}

/// The opaque form of a cursor: base64url of `<microseconds since 1970>.<uuid>`.
pub fn encode_cursor(cursor: Cursor) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{}.{}",
        cursor.at.timestamp_micros(),
        cursor.id.simple()
    ))
}

pub fn decode_cursor(raw: &str) -> Result<Cursor, ApiError> {
    let invalid = || ApiError::InvalidParameter {
        param: "after",
        reason: "is not a cursor this api returned".into(),
    };
    let text = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| invalid())?;
    let text = String::from_utf8(text).map_err(|_| invalid())?;
    let (micros, id) = text.split_once('.').ok_or_else(invalid)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(invalid)?;
    let id = Uuid::parse_str(id).map_err(|_| invalid())?;
    Ok(Cursor { at, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            at: DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(decode_cursor(&encode_cursor(cursor)).unwrap(), cursor);
        for bad in [
            "",
            "!!",
            "bm90IGEgY3Vyc29y",
            &URL_SAFE_NO_PAD.encode("1.nope"),
        ] {
            assert_eq!(decode_cursor(bad).unwrap_err().code(), "invalid_parameter");
        }
    }

    #[test]
    fn parameters_are_checked() {
        assert_eq!(parse_limit("1000").unwrap(), 1000);
        for bad in ["0", "1001", "-1", "ten", ""] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
        assert!(parse_time("t", "2026-11-29T10:00:00Z").is_ok());
        assert!(parse_time("t", "2026-11-29T10:00:00+01:00").is_ok());
        assert!(parse_time("t", "yesterday").is_err());
    }
}
