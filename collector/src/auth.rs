//! Write keys and the per-key rate limit.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
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

/// The keys the collector accepts, each with its own token buckets (beacons and decoded bytes).
#[derive(Debug)]
pub struct KeyRing {
    by_secret: HashMap<String, usize>,
    ids: Vec<String>,
    buckets: Vec<Mutex<[Bucket; 2]>>,
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

/// What one request costs a key's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Items in the request (valid or not).
    pub beacons: u64,
    /// The request body's size after decompression.
    pub bytes: u64,
}

/// A key over one of its rates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverRate {
    /// The rate it is over, per second.
    pub rate: u64,
    /// What the rate counts: `beacons` or `bytes`.
    pub unit: &'static str,
    /// How long to wait before the request would pass.
    pub wait: Duration,
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
            .map(|_| Mutex::new([Bucket::full(rate.burst, now), Bucket::full(rate.burst_bytes, now)]))
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

    /// Takes a request's cost from key `index`'s buckets, or says which rate it is over and how
    /// long to wait; a refused request takes nothing.
    pub fn take(&self, index: usize, cost: Cost, now: Instant) -> Result<(), OverRate> {
        let limits = [
            (self.rate.beacons_per_sec, self.rate.burst, cost.beacons, "beacons"),
            (self.rate.bytes_per_sec, self.rate.burst_bytes, cost.bytes, "bytes"),
        ];
        let mut buckets = self.buckets[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for ((rate, burst, wanted, unit), bucket) in limits.iter().zip(buckets.iter_mut()) {
            if *rate == 0 {
                continue;
            }
            if let Some(wait) = bucket.shortfall(*rate, *burst, *wanted, now) {
                return Err(OverRate {
                    rate: *rate,
                    unit,
                    wait,
                });
            }
        }
        for ((rate, burst, wanted, _), bucket) in limits.iter().zip(buckets.iter_mut()) {
            if *rate > 0 {
                bucket.tokens = (bucket.tokens - (*wanted).min((*burst).max(1)) as f64).max(0.0);
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(capacity: u64, now: Instant) -> Bucket {
        Bucket {
            tokens: capacity as f64,
            updated: now,
        }
    }

    /// Refills the bucket up to `now`; then `None` if `wanted` tokens (or a whole bucket, for a
    /// request larger than the bucket) are there, else how long until they are.
    fn shortfall(&mut self, rate: u64, capacity: u64, wanted: u64, now: Instant) -> Option<Duration> {
        let rate = rate as f64;
        let capacity = capacity.max(1) as f64;
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(capacity);
        self.updated = now;
        // A request larger than the whole bucket waits until the bucket is full, then passes.
        let deficit = (wanted as f64).min(capacity) - self.tokens;
        (deficit > 0.0).then(|| Duration::from_secs_f64(deficit / rate))
    }
}

/// Failed authentications per client address: a token bucket per address (IPv4, or the /64 of an
/// IPv6 address), kept in a fixed table of [`ADDRESS_SLOTS`] slots indexed by a hash keyed at random
/// per process, so memory is bounded whatever the number of addresses, and an attacker cannot aim at
/// another address's slot. Addresses that share a slot share its bucket.
#[derive(Debug)]
pub struct AuthFailures {
    slots: Vec<Mutex<Bucket>>,
    hasher: std::collections::hash_map::RandomState,
    rate: u64,
    burst: u64,
}

/// Slots of the failed-authentication table (about 24 bytes each).
pub const ADDRESS_SLOTS: usize = 65_536;

impl AuthFailures {
    /// A table for `rate` failures a second with bursts of `burst`; `rate` 0 turns it off.
    pub fn new(rate: u64, burst: u64) -> AuthFailures {
        let now = Instant::now();
        let slots = if rate == 0 { 0 } else { ADDRESS_SLOTS };
        AuthFailures {
            slots: (0..slots).map(|_| Mutex::new(Bucket::full(burst, now))).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            rate,
            burst,
        }
    }

    fn slot(&self, address: IpAddr) -> Option<&Mutex<Bucket>> {
        if self.slots.is_empty() {
            return None;
        }
        let prefix: u128 = match address {
            IpAddr::V4(v4) => u32::from(v4) as u128,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => u32::from(v4) as u128,
                None => u128::from(v6) >> 64 << 64,
            },
        };
        let index = self.hasher.hash_one(prefix) as usize % self.slots.len();
        Some(&self.slots[index])
    }

    /// How long `address` must wait before it may try to authenticate again; `None` when it may now.
    pub fn blocked(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let slot = self.slot(address)?;
        let mut bucket = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        bucket.shortfall(self.rate, self.burst, 1, now)
    }

    /// Counts one failed authentication from `address`.
    pub fn fail(&self, address: IpAddr, now: Instant) {
        if let Some(slot) = self.slot(address) {
            let mut bucket = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let _ = bucket.shortfall(self.rate, self.burst, 1, now);
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beacons(beacons: u64) -> Cost {
        Cost { beacons, bytes: 0 }
    }

    fn ring(rate: u64, burst: u64) -> KeyRing {
        let keys = vec![WriteKey::parse("app1:secret-one").unwrap()];
        KeyRing::new(
            keys,
            RateLimitConfig {
                beacons_per_sec: rate,
                burst,
                bytes_per_sec: 0,
                ..RateLimitConfig::default()
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
        assert!(ring.take(0, beacons(200), start).is_ok());
        let wait = ring.take(0, beacons(50), start).unwrap_err().wait;
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        assert!(ring.take(0, beacons(50), start + Duration::from_millis(500)).is_ok());
        assert!(ring.take(0, beacons(1), start + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn a_request_larger_than_the_bucket_passes_once_the_bucket_is_full() {
        let ring = ring(10, 20);
        let start = Instant::now();
        assert!(ring.take(0, beacons(50), start).is_ok());
        assert!(ring.take(0, beacons(50), start).is_err());
    }

    #[test]
    fn zero_rate_means_no_limit() {
        let ring = ring(0, 0);
        assert!(ring.take(0, beacons(1_000_000), Instant::now()).is_ok());
    }

    #[test]
    fn bytes_are_limited_beside_beacons_and_a_refusal_takes_nothing() {
        let keys = vec![WriteKey::parse("app1:secret-one").unwrap()];
        let rate = RateLimitConfig {
            beacons_per_sec: 100,
            burst: 100,
            bytes_per_sec: 1000,
            burst_bytes: 2000,
            ..RateLimitConfig::default()
        };
        let ring = KeyRing::new(keys, rate).unwrap();
        let start = Instant::now();
        let cost = |beacons, bytes| Cost { beacons, bytes };
        assert!(ring.take(0, cost(10, 1500), start).is_ok());
        let over = ring.take(0, cost(10, 1000), start).unwrap_err();
        assert_eq!((over.unit, over.rate), ("bytes", 1000));
        assert!((over.wait.as_secs_f64() - 0.5).abs() < 1e-6, "{over:?}");
        // The refused request took no beacons: 90 are left.
        assert!(ring.take(0, cost(90, 0), start).is_ok());
        assert_eq!(ring.take(0, cost(1, 0), start).unwrap_err().unit, "beacons");
    }

    #[test]
    fn failed_authentications_block_an_address_and_its_ipv6_prefix_only() {
        let failures = AuthFailures::new(1, 3);
        let start = Instant::now();
        let attacker: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let neighbour: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(failures.blocked(attacker, start), None);
            failures.fail(attacker, start);
        }
        assert!(failures.blocked(attacker, start).is_some());
        assert!(failures.blocked(neighbour, start).is_some(), "same /64");
        let elsewhere = (0..16u8)
            .map(|n| IpAddr::from([198, 51, 100, n]))
            .filter(|address| failures.blocked(*address, start).is_none())
            .count();
        assert!(elsewhere >= 15, "{elsewhere} of 16 other addresses may try");
        assert_eq!(failures.blocked(attacker, start + Duration::from_secs(1)), None);
        assert_eq!(AuthFailures::new(0, 0).blocked(attacker, start), None);
    }
}
