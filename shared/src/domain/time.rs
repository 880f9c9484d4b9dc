use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time with millisecond precision, shown as RFC 3339 (`2026-11-22T03:50:25.123Z`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the Unix epoch, as DynamoDB's TTL wants them (rounded up, so an item
    /// never becomes deletable before the time it stands for).
    pub const fn as_epoch_seconds_ceil(self) -> u64 {
        self.0.div_ceil(1000)
    }

    /// This time rounded up to a whole second, the precision of DynamoDB's TTL.
    pub const fn ceil_to_second(self) -> Self {
        Self(self.as_epoch_seconds_ceil().saturating_mul(1000))
    }

    /// Converts a system time; times before the epoch clamp to it.
    pub fn from_system_time(time: SystemTime) -> Self {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    /// This time as a system time.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// This time moved forward, saturating.
    pub fn saturating_add(self, by: Duration) -> Self {
        Self(
            self.0
                .saturating_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// How long after `earlier` this time is; zero when it is not later.
    pub fn saturating_since(self, earlier: Self) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Timestamp {
    /// An RFC 3339 date-time: `Z` or a numeric offset (`+02:00`, `-05:30`), with or without
    /// fractional seconds.
    pub fn parse_rfc3339(text: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "`{}` is not an RFC 3339 date-time (like 2026-12-03T17:00:00Z)",
                text.chars().take(40).collect::<String>()
            )
        };
        let bytes = text.as_bytes();
        // `±HH:MM` at the end: read the rest as UTC, then take the offset back off.
        let (utc, offset_minutes) = match bytes.len().checked_sub(6).map(|at| (at, bytes[at])) {
            Some((at, sign @ (b'+' | b'-'))) if bytes[at + 3] == b':' => {
                let hours: i64 = text[at + 1..at + 3].parse().map_err(|_| invalid())?;
                let minutes: i64 = text[at + 4..].parse().map_err(|_| invalid())?;
                if hours > 23 || minutes > 59 {
                    return Err(invalid());
                }
                let offset = hours * 60 + minutes;
                (
                    format!("{}Z", &text[..at]),
                    if sign == b'+' { offset } else { -offset },
                )
            }
            _ => (text.to_owned(), 0),
        };
        let time = humantime::parse_rfc3339(&utc).map_err(|_| invalid())?;
        let shift = Duration::from_secs(offset_minutes.unsigned_abs() * 60);
        let time = if offset_minutes >= 0 {
            time.checked_sub(shift)
        } else {
            time.checked_add(shift)
        }
        .ok_or_else(invalid)?;
        Ok(Self::from_system_time(time))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&humantime::format_rfc3339_millis(self.to_system_time()), f)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        super::from_text(deserializer, |raw| {
            humantime::parse_rfc3339(raw).map(Self::from_system_time)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_and_parse_as_rfc3339_with_milliseconds() {
        let t = Timestamp::from_millis(1_795_000_000_123);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2026-11-18T11:06:40.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }

    #[test]
    fn a_date_time_with_an_offset_is_the_same_instant_in_utc() {
        let utc = Timestamp::parse_rfc3339("2026-12-03T17:00:00Z").unwrap();
        for same in [
            "2026-12-03T18:00:00+01:00",
            "2026-12-03T11:30:00-05:30",
            "2026-12-03T17:00:00.000Z",
            "2026-12-03T17:00:00+00:00",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(same), Ok(utc), "{same}");
        }
        for bad in [
            "tomorrow",
            "2026-12-03",
            "2026-12-03T17:00:00+25:00",
            "",
            "+01:00",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn epoch_seconds_round_up() {
        assert_eq!(Timestamp::from_millis(2_000).as_epoch_seconds_ceil(), 2);
        assert_eq!(Timestamp::from_millis(2_001).as_epoch_seconds_ceil(), 3);
    }
}
