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

    /// RFC 3339 where chrono can write it, else the raw count: for error
    /// messages about times that may be out of any calendar's range.
    pub fn describe(self) -> String {
        match DateTime::from_timestamp_micros(self.0) {
            Some(dt) => dt.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            None => format!("{} microseconds since the epoch", self.0),
        }
    }

    /// RFC 3339 in UTC with a `Z`, with fractional seconds only when present.
    pub fn to_rfc3339(self) -> String {
        let mut buf = [0u8; RFC3339_MAX];
        match self.write_rfc3339(&mut buf) {
            Some(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            None => self.to_datetime().to_rfc3339_opts(SecondsFormat::AutoSi, true),
        }
    }

    /// [`Timestamp::to_rfc3339`] into `buf`, for years 1000 to 9999 (what
    /// the store accepts), returning the length; `None` for other years,
    /// which chrono writes. Every served value carries its event time, so
    /// this is on the serving path: a few integer divisions instead of
    /// chrono's general formatter.
    pub fn write_rfc3339(self, buf: &mut [u8; RFC3339_MAX]) -> Option<usize> {
        let secs = self.0.div_euclid(Self::MICROS_PER_SECOND);
        let micros = self.0.rem_euclid(Self::MICROS_PER_SECOND) as u32;
        let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
        let (year, month, day) = civil_from_days(days);
        if !(1000..=9999).contains(&year) {
            return None;
        }
        fn put(buf: &mut [u8], at: usize, value: u32, digits: usize) {
            let mut v = value;
            for i in (0..digits).rev() {
                buf[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        put(buf, 0, year as u32, 4);
        put(buf, 5, month, 2);
        put(buf, 8, day, 2);
        put(buf, 11, of_day / 3600, 2);
        put(buf, 14, of_day / 60 % 60, 2);
        put(buf, 17, of_day % 60, 2);
        let mut n = 19;
        // AutoSi: milliseconds when the rest is zero, else microseconds.
        if micros != 0 {
            buf[n] = b'.';
            if micros.is_multiple_of(1000) {
                put(buf, n + 1, micros / 1000, 3);
                n += 4;
            } else {
                put(buf, n + 1, micros, 6);
                n += 7;
            }
        }
        for (i, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
            buf[i] = c;
        }
        buf[n] = b'Z';
        Some(n + 1)
    }
}

/// The longest text [`Timestamp::write_rfc3339`] writes:
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub const RFC3339_MAX: usize = 27;

/// Year, month and day of `days` since 1970-01-01 in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The times the store accepts for event and created times: from the start
/// of year 1000 to the server's clock plus a skew allowance. A time past the
/// window is refused rather than stored, because the newest event wins
/// online: one row stamped in year 9999 would be served `fresh` forever and
/// hide every later correct write of its entity. Years before 1000 are
/// refused for symmetry with the readers downstream (RFC 3339 and most
/// engines' date types only agree on four-digit years).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    pub earliest: Timestamp,
    pub latest: Timestamp,
}

/// A time outside a [`TimeWindow`]; the message says which bound it passed
/// and, when the time is about 1000x (or 10^6x) the clock's distance from
/// the epoch, that it looks like milliseconds (or microseconds) sent as
/// seconds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TimeWindowError(pub String);

impl TimeWindow {
    /// 1000-01-01T00:00:00Z.
    pub const EARLIEST: Timestamp = Timestamp(-30_610_224_000 * Timestamp::MICROS_PER_SECOND);
    /// The default allowance for clocks running ahead of the server's.
    pub const DEFAULT_SKEW: std::time::Duration = std::time::Duration::from_secs(3600);

    /// Every time from [`TimeWindow::EARLIEST`] to `now + skew`.
    pub fn until(now: Timestamp, skew: std::time::Duration) -> Self {
        let skew = i64::try_from(skew.as_micros()).unwrap_or(i64::MAX);
        TimeWindow { earliest: Self::EARLIEST, latest: Timestamp(now.0.saturating_add(skew)) }
    }

    /// Whether `ts` lies in the window (both ends inclusive).
    pub fn contains(&self, ts: Timestamp) -> bool {
        self.earliest <= ts && ts <= self.latest
    }

    /// `Ok` when `ts` lies in the window, else why not, for a time the
    /// caller names `what` (e.g. "event time").
    pub fn check(&self, ts: Timestamp, what: &str) -> Result<(), TimeWindowError> {
        if ts < self.earliest {
            return Err(TimeWindowError(format!(
                "{what} {} is before year 1000, the earliest time accepted",
                ts.describe()
            )));
        }
        if ts > self.latest {
            return Err(TimeWindowError(format!(
                "{what} {} is after {}, the latest time accepted (the server's clock plus the allowed \
                 skew, --max-future-skew){}",
                ts.describe(),
                self.latest,
                unit_hint(ts, self.latest)
            )));
        }
        Ok(())
    }

    /// A series of timestamps (microseconds), as transforms exchange them:
    /// strictly ascending, each in the window. The error is the first
    /// offending row (0-based) and why.
    pub fn check_series(&self, timestamps: &[i64]) -> Result<(), (usize, String)> {
        for (row, &t) in timestamps.iter().enumerate() {
            let ts = Timestamp(t);
            if row > 0 && t <= timestamps[row - 1] {
                let previous = Timestamp(timestamps[row - 1]);
                let how = if t == previous.0 { "repeats" } else { "is before" };
                return Err((
                    row,
                    format!(
                        "row {row}: timestamp {} {how} row {}'s ({}); rows must be in strictly ascending time order",
                        ts.describe(),
                        row - 1,
                        previous.describe()
                    ),
                ));
            }
            self.check(ts, "timestamp").map_err(|e| (row, format!("row {row}: {e}")))?;
        }
        Ok(())
    }
}

/// A time about 1000x or 10^6x as far from the epoch as the window's end is
/// almost always a count in a finer unit read as a coarser one (milliseconds
/// where seconds were meant, nanoseconds where microseconds were).
fn unit_hint(ts: Timestamp, latest: Timestamp) -> &'static str {
    if latest.0 <= 0 {
        return "";
    }
    let ratio = ts.0 as f64 / latest.0 as f64;
    if (300.0..3_000.0).contains(&ratio) {
        "; it is about 1000x as far from 1970 as now: milliseconds where seconds were meant?"
    } else if (300_000.0..3_000_000.0).contains(&ratio) {
        "; it is about 10^6x as far from 1970 as now: microseconds where seconds were meant?"
    } else {
        ""
    }
}

/// Reads a timestamp a client sent in JSON: RFC 3339 text (see
/// [`Timestamp::parse`]); a number is refused with [`number_hint`]'s reading
/// of it against `now`, anything else by its kind.
pub fn read_json(json: &serde_json::Value, now: Timestamp) -> Result<Timestamp, String> {
    match json {
        serde_json::Value::String(text) => Timestamp::parse(text).map_err(|e| e.to_string()),
        serde_json::Value::Number(n) => Err(number_hint(n.as_f64().unwrap_or(f64::NAN), now)),
        serde_json::Value::Null => Err("must be an RFC 3339 string, not null".into()),
        serde_json::Value::Bool(_) => Err("must be an RFC 3339 string, not a boolean".into()),
        serde_json::Value::Array(_) => Err("must be an RFC 3339 string, not an array".into()),
        serde_json::Value::Object(_) => Err("must be an RFC 3339 string, not an object".into()),
    }
}

/// Why a number was refused where a timestamp belongs, and, when it reads
/// as a time within 100 years of `now` in one of the usual epoch units,
/// which: clients that serialize dates as numbers most often send epoch
/// milliseconds (pandas' `to_json`, JavaScript's `Date.now()`).
pub fn number_hint(n: f64, now: Timestamp) -> String {
    // Exponent form past what any epoch count could be, so a hostile 1e300
    // is not written out in 300 digits.
    let shown = if n.abs() < 1e16 { format!("{n}") } else { format!("{n:e}") };
    format!(
        "timestamps are RFC 3339 strings (e.g. \"2024-05-01T13:00:00Z\"), not numbers; got {shown}{}",
        epoch_reading(n, now)
    )
}

/// `", which as epoch milliseconds would be 2024-..."` for the first of
/// seconds, milliseconds, microseconds and nanoseconds that puts `n` within
/// 50 years of `now`, else nothing.
pub fn epoch_reading(n: f64, now: Timestamp) -> String {
    const HALF_CENTURY: f64 = 50.0 * 365.25 * 86_400.0;
    let now_secs = now.0 as f64 / Timestamp::MICROS_PER_SECOND as f64;
    for (unit, per_second) in [("seconds", 1.0), ("milliseconds", 1e3), ("microseconds", 1e6), ("nanoseconds", 1e9)] {
        let secs = n / per_second;
        if (secs - now_secs).abs() < HALF_CENTURY {
            let at = Timestamp((secs * Timestamp::MICROS_PER_SECOND as f64) as i64);
            return format!(", which as epoch {unit} would be {at}");
        }
    }
    String::new()
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; RFC3339_MAX];
        match self.write_rfc3339(&mut buf) {
            // ASCII digits and separators only.
            Some(n) => s.serialize_str(std::str::from_utf8(&buf[..n]).map_err(serde::ser::Error::custom)?),
            None => s.serialize_str(&self.to_rfc3339()),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TimestampVisitor)
    }
}

/// Reads RFC 3339 text; a number is refused with [`number_hint`]'s reading
/// of it (against the wall clock: it is only a hint).
struct TimestampVisitor;

impl TimestampVisitor {
    fn number<E: serde::de::Error>(n: f64) -> Result<Timestamp, E> {
        Err(E::custom(number_hint(n, Timestamp::from_datetime(Utc::now()))))
    }
}

impl serde::de::Visitor<'_> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an RFC 3339 timestamp string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Timestamp, E> {
        Timestamp::parse(text).map_err(E::custom)
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Timestamp, E> {
        Self::number(n as f64)
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Timestamp, E> {
        Self::number(n as f64)
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Timestamp, E> {
        Self::number(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_text_is_chronos_for_every_kind_of_time() {
        let chrono = |t: Timestamp| t.to_datetime().to_rfc3339_opts(SecondsFormat::AutoSi, true);
        // Whole seconds, milliseconds, microseconds; leap days, year ends,
        // the first and last instants written this way, before 1970.
        let mut times = vec![
            Timestamp::parse("1000-01-01T00:00:00Z").unwrap().0,
            Timestamp::parse("9999-12-31T23:59:59.999999Z").unwrap().0,
            Timestamp::parse("2024-02-29T12:34:56.789Z").unwrap().0,
            Timestamp::parse("2000-02-29T00:00:00.000001Z").unwrap().0,
            Timestamp::parse("1969-12-31T23:59:59.5Z").unwrap().0,
            Timestamp::parse("1900-03-01T00:00:00Z").unwrap().0,
            0,
            -1,
        ];
        // And a spread over the whole range, from a fixed LCG.
        let (lo, hi) = (times[0], times[1]);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..20_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let t = lo + (x % (hi - lo) as u64) as i64;
            // Every third a whole second, every third a whole millisecond.
            times.push(match i % 3 {
                0 => t - t.rem_euclid(1_000_000),
                1 => t - t.rem_euclid(1_000),
                _ => t,
            });
        }
        for t in times.into_iter().map(Timestamp) {
            assert_eq!(t.to_rfc3339(), chrono(t), "{}", t.0);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{}\"", chrono(t)));
        }
        // Outside years 1000-9999 chrono writes it.
        let far = Timestamp::parse("0999-12-31T23:59:59Z").unwrap();
        assert_eq!(far.to_rfc3339(), chrono(far));
    }

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

    #[test]
    fn the_window_refuses_times_past_the_skew_or_before_year_1000() {
        let now = Timestamp::parse("2026-12-01T12:00:00Z").unwrap();
        let window = TimeWindow::until(now, std::time::Duration::from_secs(3600));
        assert!(window.check(now.plus_secs(3600), "event time").is_ok());
        assert!(window.check(Timestamp::parse("1000-01-01T00:00:00Z").unwrap(), "event time").is_ok());
        let late = window.check(now.plus_secs(3601), "event time").unwrap_err().0;
        assert!(late.starts_with("event time 2026-12-01T13:00:01Z is after 2026-12-01T13:00:00Z"), "{late}");
        let ancient = window.check(Timestamp::parse("0999-12-31T23:59:59Z").unwrap(), "created time").unwrap_err().0;
        assert_eq!(ancient, "created time 0999-12-31T23:59:59Z is before year 1000, the earliest time accepted");
        let year_9999 = window.check(Timestamp::parse("9999-12-31T00:00:00Z").unwrap(), "event time").unwrap_err().0;
        assert!(!year_9999.contains("milliseconds"), "{year_9999}");
    }

    #[test]
    fn a_time_a_thousand_times_too_far_is_named_as_milliseconds() {
        let now = Timestamp::parse("2026-12-01T12:00:00Z").unwrap();
        let window = TimeWindow::until(now, std::time::Duration::from_secs(3600));
        // Seconds since the epoch, taken as milliseconds' worth of seconds.
        let as_if_millis = Timestamp(now.0 * 1000);
        assert!(window.check(as_if_millis, "event time").unwrap_err().0.contains("milliseconds where seconds"));
        // Out of chrono's range, written as a count.
        let max = window.check(Timestamp(i64::MAX - 5), "t").unwrap_err().0;
        assert!(max.contains("9223372036854775802 microseconds since the epoch"), "{max}");
    }

    #[test]
    fn a_number_sent_as_a_timestamp_is_explained_in_the_unit_it_looks_like() {
        let now = Timestamp::parse("2026-12-01T12:00:00Z").unwrap();
        let millis = number_hint(1_764_590_400_000.0, now);
        assert!(millis.ends_with("as epoch milliseconds would be 2025-12-01T12:00:00Z"), "{millis}");
        assert!(number_hint(1_764_590_400.0, now).ends_with("as epoch seconds would be 2025-12-01T12:00:00Z"));
        assert!(number_hint(7.0, now).ends_with("not numbers; got 7"));
        assert!(number_hint(1e300, now).ends_with("not numbers; got 1e300"));
    }

    #[test]
    fn json_timestamps_are_text_and_anything_else_is_named() {
        let now = Timestamp::parse("2026-12-01T12:00:00Z").unwrap();
        let at = read_json(&serde_json::json!("2026-12-01T12:00:00Z"), now).unwrap();
        assert_eq!(at, now);
        assert!(read_json(&serde_json::json!("soon"), now).unwrap_err().contains("'soon' is not an RFC 3339"));
        assert!(read_json(&serde_json::json!(1_764_590_400_000u64), now).unwrap_err().contains("epoch milliseconds"));
        assert_eq!(read_json(&serde_json::json!(null), now).unwrap_err(), "must be an RFC 3339 string, not null");
        assert!(read_json(&serde_json::json!({"t": 1}), now).unwrap_err().ends_with("not an object"));
    }
}
