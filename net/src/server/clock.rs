//! The wall clock, in one place: zxid floors, znode times, session ids and tokens read it; no
//! lease or timeout does (they use the monotonic clock).

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
pub fn unix_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

pub fn unix_millis() -> i64 {
    unix_micros() / 1000
}
