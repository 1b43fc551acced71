//! Back-off between attempts: exponential from `initial_backoff_ms`, doubling up to
//! `max_backoff_ms`, with "equal jitter" (half fixed, half random) so that many jobs rejected at the
//! same moment do not come back at the same moment; attempts stop once `retry_for_secs` have passed
//! since the first failure.

use std::time::{Duration, Instant};

use crate::config::EsConfig;

/// The back-off state of one write.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    deadline: Instant,
    /// xorshift state for the jitter (no cryptography needed).
    seed: u64,
}

impl Backoff {
    /// A fresh back-off starting now.
    pub fn new(config: &EsConfig) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos() as u64)
            .unwrap_or(0x9E37_79B9)
            | 1;
        Backoff {
            next: Duration::from_millis(config.initial_backoff_ms),
            max: Duration::from_millis(config.max_backoff_ms),
            deadline: Instant::now() + Duration::from_secs(config.retry_for_secs),
            seed,
        }
    }

    /// The pause before the next attempt, or `None` when the retry time is used up.
    pub fn next_delay(&mut self) -> Option<Duration> {
        let now = Instant::now();
        if now >= self.deadline {
            return None;
        }
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let half = base / 2;
        let jitter = half.mul_f64((self.seed % 1_000) as f64 / 1_000.0);
        Some((half + jitter).min(self.deadline - now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum_within_jitter() {
        let config = EsConfig {
            initial_backoff_ms: 100,
            max_backoff_ms: 400,
            retry_for_secs: 3600,
            ..EsConfig::default()
        };
        let mut backoff = Backoff::new(&config);
        let bases = [100, 200, 400, 400, 400];
        for base in bases {
            let delay = backoff.next_delay().unwrap().as_millis() as u64;
            assert!(delay >= base / 2 && delay <= base, "{delay} for base {base}");
        }
    }

    #[test]
    fn no_delay_once_the_retry_time_is_used_up() {
        let config = EsConfig {
            retry_for_secs: 0,
            ..EsConfig::default()
        };
        assert_eq!(Backoff::new(&config).next_delay(), None);
    }
}
