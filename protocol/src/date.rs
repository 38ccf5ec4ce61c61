//! Civil dates and instants, without a clock.
//!
//! The protocol never reads the time: callers pass `now` as a [`Timestamp`] (seconds since the
//! Unix epoch, UTC). Forms carry calendar dates (`YYYY-MM-DD`, the form's own day in Japan) as
//! [`Date`]. Support periods (R7) are computed in months with end-of-month clamping: six months
//! after 31 August is 28 (or 29) February.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Seconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

/// Seconds in a day.
pub const DAY: u64 = 86_400;

impl Timestamp {
    /// The UTC calendar date of this instant.
    pub fn date(self) -> Date {
        Date::from_days((self.0 / DAY) as i64)
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

/// A calendar date (proleptic Gregorian), written `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: i32,
    month: u8,
    day: u8,
}

/// Why a string is not a date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a date: expected YYYY-MM-DD")]
pub struct DateError(pub String);

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u8) -> u8 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

impl Date {
    /// A date from its parts, if it exists.
    pub fn new(year: i32, month: u8, day: u8) -> Option<Date> {
        ((1..=9999).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month))
        .then_some(Date { year, month, day })
    }

    /// Year.
    pub fn year(self) -> i32 {
        self.year
    }
    /// Month, 1..=12.
    pub fn month(self) -> u8 {
        self.month
    }
    /// Day of month.
    pub fn day(self) -> u8 {
        self.day
    }

    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    pub fn to_days(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` after 1970-01-01 (`civil_from_days`).
    pub fn from_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }

    /// Midnight UTC at the start of this date.
    pub fn start(self) -> Timestamp {
        Timestamp((self.to_days().max(0) as u64) * DAY)
    }

    /// The same day `months` later, clamped to the end of a shorter month.
    pub fn add_months(self, months: u32) -> Date {
        let total = self.year as i64 * 12 + i64::from(self.month - 1) + i64::from(months);
        let year = total.div_euclid(12) as i32;
        let month = (total.rem_euclid(12) + 1) as u8;
        let day = self.day.min(days_in_month(year, month));
        Date { year, month, day }
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
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
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
