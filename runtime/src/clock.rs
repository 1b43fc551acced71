//! The wall clock. Event times, `received_at`, `sent_at` and window bounds are Unix milliseconds;
//! this is the one place that reads the system clock for them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now; 0 on a clock set before 1970.
///
/// ```
/// let now = qoe_runtime::clock::epoch_ms();
/// assert!(now > 1_600_000_000_000); // after September 2020
/// ```
pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

/// [`epoch_ms`] as the signed milliseconds that event times and window bounds are kept in.
pub fn epoch_ms_i64() -> i64 {
    i64::try_from(epoch_ms()).unwrap_or(i64::MAX)
}
