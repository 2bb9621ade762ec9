//! Timestamps: microseconds since the Unix epoch, UTC, parsed from RFC 3339
//! (or a bare date, which means midnight UTC) and always written as RFC 3339
//! with a `Z`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A point in time, microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

/// The text could not be read as a timestamp.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not an RFC 3339 timestamp (e.g. 2024-05-01T13:00:00Z) or a date (2024-05-01)")]
pub struct TimestampError(pub String);

impl Timestamp {
    pub const MICROS_PER_SECOND: i64 = 1_000_000;

    pub fn from_secs(secs: i64) -> Self {
        Timestamp(secs * Self::MICROS_PER_SECOND)
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    /// Seconds from `self` to `later` (negative when `later` is earlier).
    pub fn seconds_until(self, later: Timestamp) -> f64 {
        (later.0 - self.0) as f64 / Self::MICROS_PER_SECOND as f64
    }

    pub fn plus_secs(self, secs: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs.saturating_mul(Self::MICROS_PER_SECOND)))
    }

    /// Parses RFC 3339 (any offset, converted to UTC), `YYYY-MM-DD HH:MM:SS`
    /// and `YYYY-MM-DDTHH:MM:SS` without offset (taken as UTC), or `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let t = text.trim();
        if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
            return Ok(Self::from_datetime(dt.with_timezone(&Utc)));
        }
        for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
            if let Ok(naive) = NaiveDateTime::parse_from_str(t, fmt) {
                return Ok(Self::from_datetime(Utc.from_utc_datetime(&naive)));
            }
        }
        if let Ok(date) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
            let naive = date.and_hms_opt(0, 0, 0).expect("midnight exists");
            return Ok(Self::from_datetime(Utc.from_utc_datetime(&naive)));
        }
        Err(TimestampError(text.to_string()))
    }

    pub fn from_datetime(dt: DateTime<Utc>) -> Self {
        Timestamp(dt.timestamp_micros())
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0).unwrap_or_default()
    }

    /// RFC 3339 in UTC with a `Z`, with fractional seconds only when present.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime().to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_dates_and_naive_times_as_utc() {
        let z = Timestamp::parse("2024-05-01T13:00:00Z").unwrap();
        assert_eq!(Timestamp::parse("2024-05-01T15:00:00+02:00").unwrap(), z);
        assert_eq!(Timestamp::parse("2024-05-01 13:00:00").unwrap(), z);
        assert_eq!(Timestamp::parse("2024-05-01").unwrap().plus_secs(13 * 3600), z);
        assert_eq!(z.0, 1_714_568_400_000_000);
        assert_eq!(z.to_rfc3339(), "2024-05-01T13:00:00Z");
        assert!(Timestamp::parse("yesterday").is_err());
    }
}
