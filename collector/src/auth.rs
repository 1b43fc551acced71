//! Write keys and the per-key rate limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::config::{ConfigError, RateLimitConfig};

/// One write key: the id stored with every beacon and the secret clients present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteKey {
    /// Public id, stored as `key_id` in every beacon the key sends.
    pub id: String,
    /// The secret clients send in `Authorization: Bearer` or `?key=`.
    pub secret: String,
}

impl WriteKey {
    /// Parses `ID:SECRET`, or a bare `SECRET` whose id is `k` and the first 12 hex digits of its SHA-256.
    pub fn parse(text: &str) -> Result<WriteKey, ConfigError> {
        let text = text.trim();
        let (id, secret) = match text.split_once(':') {
            Some((id, secret)) => (id.trim().to_string(), secret.trim().to_string()),
            None => {
                let digest = Sha256::digest(text.as_bytes());
                let hex: String = digest.iter().take(6).map(|byte| format!("{byte:02x}")).collect();
                (format!("k{hex}"), text.to_string())
            }
        };
        let redacted = || format!("{id}:***");
        if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(ConfigError::WriteKey(
                redacted(),
                "the id must be 1 to 64 of [A-Za-z0-9._-]",
            ));
        }
        if secret.len() < 8 {
            return Err(ConfigError::WriteKey(
                redacted(),
                "the secret must have at least 8 characters",
            ));
        }
        Ok(WriteKey { id, secret })
    }

    /// Parses a keys file: one key per line, blank lines and `#` comments ignored.
    pub fn parse_file(text: &str) -> Result<Vec<WriteKey>, ConfigError> {
        text.lines()
            .map(|line| line.split('#').next().unwrap_or("").trim())
            .filter(|line| !line.is_empty())
            .map(WriteKey::parse)
            .collect()
    }
}

/// The keys the collector accepts, each with its own token bucket.
#[derive(Debug)]
pub struct KeyRing {
    by_secret: HashMap<String, usize>,
    ids: Vec<String>,
    buckets: Vec<Mutex<Bucket>>,
    rate: RateLimitConfig,
}

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No key in the request.
    Missing,
    /// A key the collector does not know.
    Unknown,
}

impl KeyRing {
    /// Builds the ring. Two keys with the same id or the same secret are refused.
    pub fn new(keys: Vec<WriteKey>, rate: RateLimitConfig) -> Result<KeyRing, ConfigError> {
        if keys.is_empty() {
            return Err(ConfigError::NoWriteKey);
        }
        let mut by_secret = HashMap::new();
        let mut ids: Vec<String> = Vec::new();
        for key in keys {
            if ids.contains(&key.id) {
                return Err(ConfigError::WriteKey(format!("{}:***", key.id), "the id is used twice"));
            }
            if by_secret.insert(key.secret, ids.len()).is_some() {
                return Err(ConfigError::WriteKey(
                    format!("{}:***", key.id),
                    "the secret is used twice",
                ));
            }
            ids.push(key.id);
        }
        let now = Instant::now();
        let buckets = ids
            .iter()
            .map(|_| {
                Mutex::new(Bucket {
                    tokens: rate.burst as f64,
                    updated: now,
                })
            })
            .collect();
        Ok(KeyRing {
            by_secret,
            ids,
            buckets,
            rate,
        })
    }

    /// Finds the key a request presents; returns its index.
    pub fn authenticate(&self, secret: Option<&str>) -> Result<usize, Denied> {
        let secret = secret.filter(|secret| !secret.is_empty()).ok_or(Denied::Missing)?;
        self.by_secret.get(secret).copied().ok_or(Denied::Unknown)
    }

    /// The id of key `index`.
    pub fn id(&self, index: usize) -> &str {
        &self.ids[index]
    }

    /// Takes `beacons` tokens from key `index`'s bucket, or says how long to wait before retrying.
    pub fn take(&self, index: usize, beacons: u64, now: Instant) -> Result<(), Duration> {
        if self.rate.beacons_per_sec == 0 {
            return Ok(());
        }
        let rate = self.rate.beacons_per_sec as f64;
        let capacity = self.rate.burst.max(1) as f64;
        let mut bucket = self.buckets[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.updated = now;
        let wanted = beacons as f64;
        if bucket.tokens >= wanted {
            bucket.tokens -= wanted;
            return Ok(());
        }
        // A request larger than the whole bucket waits until the bucket is full, then passes.
        let deficit = wanted.min(capacity) - bucket.tokens;
        if deficit <= 0.0 {
            bucket.tokens = 0.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64(deficit / rate))
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(rate: u64, burst: u64) -> KeyRing {
        let keys = vec![WriteKey::parse("app1:secret-one").unwrap()];
        KeyRing::new(
            keys,
            RateLimitConfig {
                beacons_per_sec: rate,
                burst,
            },
        )
        .unwrap()
    }

    #[test]
    fn keys_parse_with_and_without_id() {
        assert_eq!(WriteKey::parse("web:abcdefgh").unwrap().id, "web");
        let bare = WriteKey::parse("abcdefgh").unwrap();
        assert_eq!(bare.secret, "abcdefgh");
        assert_eq!(bare.id.len(), 13);
        assert!(WriteKey::parse("web:short").is_err());
        assert!(WriteKey::parse("bad id:abcdefgh").is_err());
        let file = "# keys\nweb:abcdefgh\n\nios:ijklmnop # the iOS app\n";
        let keys = WriteKey::parse_file(file).unwrap();
        assert_eq!(
            keys.iter().map(|key| key.id.as_str()).collect::<Vec<_>>(),
            ["web", "ios"]
        );
    }

    #[test]
    fn authentication_tells_missing_from_unknown() {
        let ring = ring(0, 0);
        assert_eq!(ring.authenticate(None), Err(Denied::Missing));
        assert_eq!(ring.authenticate(Some("")), Err(Denied::Missing));
        assert_eq!(ring.authenticate(Some("nope-nope")), Err(Denied::Unknown));
        assert_eq!(ring.id(ring.authenticate(Some("secret-one")).unwrap()), "app1");
    }

    #[test]
    fn the_bucket_refills_at_the_configured_rate() {
        let ring = ring(100, 200);
        let start = Instant::now();
        assert!(ring.take(0, 200, start).is_ok());
        let wait = ring.take(0, 50, start).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        assert!(ring.take(0, 50, start + Duration::from_millis(500)).is_ok());
        assert!(ring.take(0, 1, start + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn a_request_larger_than_the_bucket_passes_once_the_bucket_is_full() {
        let ring = ring(10, 20);
        let start = Instant::now();
        assert!(ring.take(0, 50, start).is_ok());
        assert!(ring.take(0, 50, start).is_err());
    }

    #[test]
    fn zero_rate_means_no_limit() {
        let ring = ring(0, 0);
        assert!(ring.take(0, 1_000_000, Instant::now()).is_ok());
    }
}
