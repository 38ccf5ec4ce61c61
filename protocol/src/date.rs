//! Civil dates and instants, without a clock.
//!
//! The protocol never reads the time: callers pass `now` as a [`Timestamp`] (seconds since the
//! Unix epoch, UTC). Forms carry calendar dates (`YYYY-MM-DD`) as [`Date`], and every civil date
//! is a **Japan date**: "today" is the day in Asia/Tokyo ([`Timestamp::date`]), so a consent that
//! starts today is valid from 00:00 JST, not from 09:00, and a withdrawal recorded at 08:00 JST is
//! dated that day. Asia/Tokyo is UTC+09:00 all year (Japan has observed no daylight saving time
//! since 1951), so a fixed offset is the zone's exact rule for every date the exchange handles.
//! The calendar arithmetic is the `time` crate's; support periods (R7) are computed in months
//! with end-of-month clamping: six months after 31 August is 28 (or 29) February.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Seconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

/// Seconds in a day.
pub const DAY: u64 = 86_400;

/// Japan Standard Time's offset from UTC, in seconds (Asia/Tokyo, no daylight saving time).
pub const JST_OFFSET_SECS: u64 = 9 * 3600;

/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

impl Timestamp {
    /// The Japan (Asia/Tokyo) calendar date of this instant.
    pub fn date(self) -> Date {
        Date::from_days(((self.0 + JST_OFFSET_SECS) / DAY) as i64)
    }

    /// This instant rounded down to midnight UTC (used for `iat` in manifests).
    pub fn floor_day(self) -> Timestamp {
        Timestamp(self.0 - self.0 % DAY)
    }

    /// `self + secs`, saturating.
    pub fn plus(self, secs: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs))
    }
}

/// A calendar date (proleptic Gregorian, years 1 to 9999), written `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(time::Date);

/// Why a string is not a date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a date: expected YYYY-MM-DD")]
pub struct DateError(pub String);

impl Date {
    /// A date from its parts, if it exists.
    pub fn new(year: i32, month: u8, day: u8) -> Option<Date> {
        if !(1..=9999).contains(&year) {
            return None;
        }
        let month = time::Month::try_from(month).ok()?;
        time::Date::from_calendar_date(year, month, day)
            .ok()
            .map(Date)
    }

    /// Year.
    pub fn year(self) -> i32 {
        self.0.year()
    }
    /// Month, 1..=12.
    pub fn month(self) -> u8 {
        self.0.month() as u8
    }
    /// Day of month.
    pub fn day(self) -> u8 {
        self.0.day()
    }

    /// Days since 1970-01-01.
    pub fn to_days(self) -> i64 {
        i64::from(self.0.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY
    }

    /// The date `days` after 1970-01-01, clamped to the years 1 to 9999.
    pub fn from_days(days: i64) -> Date {
        let lo = Date::new(1, 1, 1).expect("valid").to_days();
        let hi = Date::new(9999, 12, 31).expect("valid").to_days();
        let jd = days.clamp(lo, hi) + UNIX_EPOCH_JULIAN_DAY;
        Date(time::Date::from_julian_day(jd as i32).expect("within the supported range"))
    }

    /// Midnight in Japan at the start of this date.
    pub fn start(self) -> Timestamp {
        Timestamp(((self.to_days().max(0) as u64) * DAY).saturating_sub(JST_OFFSET_SECS))
    }

    /// The same day `months` later, clamped to the end of a shorter month.
    pub fn add_months(self, months: u32) -> Date {
        let total = i64::from(self.year()) * 12 + i64::from(self.month() - 1) + i64::from(months);
        let year = total.div_euclid(12).min(9999) as i32;
        let month = (total.rem_euclid(12) + 1) as u8;
        let last = time::Month::try_from(month)
            .map(|m| m.length(year))
            .unwrap_or(28);
        Date::new(year, month, self.day().min(last)).unwrap_or(self)
    }

    /// The date `n` days later (or earlier, for negative `n`).
    pub fn add_days(self, n: i64) -> Date {
        Date::from_days(self.to_days() + n)
    }
}

impl FromStr for Date {
    type Err = DateError;
    fn from_str(s: &str) -> Result<Date, DateError> {
        let err = || DateError(s.to_owned());
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(err());
        }
        let num = |r: std::ops::Range<usize>| -> Result<u32, DateError> {
            let part = &s[r];
            if part.bytes().all(|c| c.is_ascii_digit()) {
                part.parse().map_err(|_| err())
            } else {
                Err(err())
            }
        };
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        Date::new(y as i32, m as u8, d as u8).ok_or_else(err)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.year(),
            self.month(),
            self.day()
        )
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip() {
        for n in [-1000i64, 0, 1, 59, 60, 365, 10_957, 20_000, 2_932_896] {
            assert_eq!(Date::from_days(n).to_days(), n);
        }
        assert_eq!(Date::from_days(0).to_string(), "1970-01-01");
        let d: Date = "2026-11-01".parse().unwrap();
        assert_eq!(Date::from_days(d.to_days()), d);
        assert_eq!(d.start().date(), d);
        assert_eq!(Timestamp(d.start().0 + 86_399).date(), d);
    }

    #[test]
    fn today_is_the_day_in_japan() {
        // 2026-11-01T15:30Z is 2026-11-02 00:30 in Tokyo; 2026-11-01T14:59:59Z is still the 1st.
        let d: Date = "2026-11-02".parse().unwrap();
        assert_eq!(Timestamp(1_793_547_000).date(), d);
        assert_eq!(Timestamp(1_793_545_199).date(), d.add_days(-1));
        // Midnight in Tokyo is 15:00 UTC the day before.
        assert_eq!(d.start(), Timestamp(1_793_545_200));
    }

    #[test]
    fn months_clamp_to_month_end() {
        let d: Date = "2026-08-31".parse().unwrap();
        assert_eq!(d.add_months(6).to_string(), "2027-02-28");
        let d: Date = "2027-08-31".parse().unwrap();
        assert_eq!(d.add_months(6).to_string(), "2028-02-29");
        let d: Date = "2026-11-01".parse().unwrap();
        assert_eq!(d.add_months(12).to_string(), "2027-11-01");
    }

    #[test]
    fn bad_dates_are_refused() {
        for s in [
            "2026-02-29",
            "2026-13-01",
            "2026-1-01",
            "20261101",
            "2026-11-01T00",
            "+026-11-01",
        ] {
            assert_eq!(
                s.parse::<Date>().unwrap_err(),
                DateError(s.to_owned()),
                "{s}"
            );
        }
        assert!("2028-02-29".parse::<Date>().is_ok());
    }
}
