//! The static world of a simulation: rooms and their popularity, CDNs and their quality, ISPs, regions,
//! platforms and devices, plus the sampling helpers the generator draws every random number through.
//!
//! Everything here is built once per simulation; the generator clones the pre-built strings into
//! beacons, so no text is formatted per beacon.

use std::collections::BTreeMap;

use qoe_schemas::{ErrorStage, Network, Platform, Resolver};
use rand::rngs::StdRng;
use rand::Rng;
use rand_distr::{Distribution, Exp1, StandardNormal};

/// Zipf exponent of room popularity: room 1 gets the largest share of arrivals.
const ROOM_POPULARITY_EXPONENT: f64 = 1.1;

/// The A/B experiment every viewer is assigned to, and its arms.
pub(crate) const EXPERIMENT: &str = "abr_v2";
pub(crate) const ARM_CONTROL: usize = 0;
pub(crate) const ARM_TREATMENT: usize = 1;
/// The treatment arm stalls this much less often.
pub(crate) const TREATMENT_STALL_FACTOR: f64 = 0.8;

/// The CDN that suffers the scripted stall incident.
pub(crate) const INCIDENT_CDN: &str = "cdn-b";

/// One CDN: its name, share of viewers, nodes and quality.
#[derive(Debug)]
pub(crate) struct CdnProfile {
    pub(crate) name: String,
    /// Share of viewers (and publishers) served by this CDN.
    pub(crate) share: f64,
    /// Edge nodes viewers pull from.
    pub(crate) edges: Vec<String>,
    /// Origins publishers push to.
    pub(crate) origins: Vec<String>,
    /// Expected stalls per 10 s of playback, before network and experiment factors.
    pub(crate) stalls_per_10s: f64,
    /// Median length of one stall, ms.
    pub(crate) stall_median_ms: f64,
    /// Median request-to-first-media-packet time, ms (on top of one round trip).
    pub(crate) first_packet_median_ms: f64,
    /// Multiplier of the viewer's network round-trip time.
    pub(crate) rtt_factor: f64,
    /// Median startup skip when there is one, ms.
    pub(crate) startup_skip_median_ms: f64,
    /// Share of sessions with no startup skip at all.
    pub(crate) startup_skip_zero_share: f64,
}

/// One client platform: its share and the operating systems and devices seen on it.
#[derive(Debug)]
pub(crate) struct PlatformProfile {
    pub(crate) platform: Platform,
    pub(crate) share: f64,
    pub(crate) os: Vec<String>,
    pub(crate) models: Vec<String>,
    /// Network types and their weights on this platform.
    pub(crate) networks: &'static [(Network, f64)],
    /// Extra decode and render time before the first frame, ms.
    pub(crate) render_median_ms: f64,
}

const MOBILE_NETWORKS: &[(Network, f64)] = &[
    (Network::Wifi, 0.55),
    (Network::G4, 0.30),
    (Network::G5, 0.10),
    (Network::G3, 0.04),
    (Network::Unknown, 0.01),
];
const DESKTOP_NETWORKS: &[(Network, f64)] = &[(Network::Wifi, 0.6), (Network::Ethernet, 0.4)];
const PUBLISHER_NETWORKS: &[(Network, f64)] = &[(Network::Wifi, 0.6), (Network::G4, 0.25), (Network::G5, 0.15)];

/// Median round-trip time of a network type to a good edge, ms.
pub(crate) fn network_rtt_median_ms(network: Network) -> f64 {
    match network {
        Network::Ethernet => 12.0,
        Network::Wifi => 25.0,
        Network::G5 => 30.0,
        Network::G4 => 55.0,
        Network::G3 => 140.0,
        Network::G2 => 400.0,
        Network::Unknown => 60.0,
    }
}

/// How much more often a viewer stalls on this network type.
pub(crate) fn network_stall_factor(network: Network) -> f64 {
    match network {
        Network::Ethernet => 0.6,
        Network::Wifi => 0.8,
        Network::G5 => 0.9,
        Network::G4 => 1.4,
        Network::G3 => 2.5,
        Network::G2 => 5.0,
        Network::Unknown => 1.5,
    }
}

/// The top rung of the bitrate ladder a viewer on this network settles on, kbit/s.
pub(crate) fn network_bitrate_kbps(network: Network) -> u64 {
    match network {
        Network::Ethernet | Network::Wifi => 2_500,
        Network::G5 => 2_500,
        Network::G4 => 1_500,
        Network::G3 => 600,
        Network::G2 => 300,
        Network::Unknown => 1_000,
    }
}

/// Error codes of fatal technical errors, by stage.
pub(crate) fn technical_error_code(stage: ErrorStage) -> &'static str {
    match stage {
        ErrorStage::Dns => "DNS_RESOLVE_FAILED",
        ErrorStage::Connect => "CONNECT_TIMEOUT",
        ErrorStage::FirstPacket => "FIRST_PACKET_TIMEOUT",
        ErrorStage::Decode => "DECODER_INIT_FAILED",
        ErrorStage::Playback => "STREAM_INTERRUPTED",
    }
}

/// How long the player waits before giving up at a stage, ms.
pub(crate) fn stage_timeout_ms(stage: ErrorStage) -> u64 {
    match stage {
        ErrorStage::Dns => 5_000,
        ErrorStage::Connect => 8_000,
        ErrorStage::FirstPacket => 10_000,
        ErrorStage::Decode | ErrorStage::Playback => 2_000,
    }
}

/// Codes of business refusals (fatal, category business).
pub(crate) const BUSINESS_ERROR_CODES: &[&str] = &["GEO_BLOCKED", "PAYWALL", "AGE_RESTRICTED"];

/// Codes of non-fatal playback errors the player recovers from.
pub(crate) const SOFT_ERROR_CODES: &[(&str, ErrorStage)] = &[
    ("DECODE_GLITCH", ErrorStage::Decode),
    ("SEGMENT_RETRY", ErrorStage::Playback),
];

/// Resolvers and their shares.
pub(crate) const RESOLVERS: &[(Resolver, f64)] = &[
    (Resolver::HttpDns, 0.6),
    (Resolver::LocalDns, 0.3),
    (Resolver::Cached, 0.1),
];

/// Publisher capture setups: width, height, frame rate, encoder target kbit/s.
pub(crate) const CAPTURE_SETUPS: &[(u64, u64, f64, u64)] = &[
    (720, 1280, 30.0, 1_800),
    (1080, 1920, 30.0, 3_500),
    (1280, 720, 30.0, 1_800),
    (1920, 1080, 60.0, 4_500),
];

/// Everything fixed for one simulation.
#[derive(Debug)]
pub(crate) struct Catalog {
    /// `room-0001`.. in popularity order.
    pub(crate) rooms: Vec<String>,
    /// Cumulative popularity of the rooms, ending at 1.
    room_cdf: Vec<f64>,
    pub(crate) cdns: Vec<CdnProfile>,
    pub(crate) isps: Vec<String>,
    pub(crate) regions: Vec<String>,
    pub(crate) app_versions: Vec<String>,
    app_version_weights: Vec<f64>,
    pub(crate) platforms: Vec<PlatformProfile>,
    /// The `exp` map of each arm, indexed by [`ARM_CONTROL`] and [`ARM_TREATMENT`].
    pub(crate) arms: [BTreeMap<String, String>; 2],
    /// The publisher side: encoder names by platform.
    pub(crate) encoders: Vec<String>,
}

impl Catalog {
    /// Builds the world for `rooms` rooms (at least one).
    pub(crate) fn new(rooms: usize) -> Catalog {
        let room_count = rooms.max(1);
        let room_ids: Vec<String> = (1..=room_count).map(|rank| format!("room-{rank:04}")).collect();
        let weights: Vec<f64> = (1..=room_count)
            .map(|rank| (rank as f64).powf(-ROOM_POPULARITY_EXPONENT))
            .collect();
        let total_weight: f64 = weights.iter().sum();
        let mut running = 0.0;
        let mut room_cdf: Vec<f64> = weights
            .iter()
            .map(|weight| {
                running += weight / total_weight;
                running
            })
            .collect();
        if let Some(last) = room_cdf.last_mut() {
            *last = 1.0;
        }

        let cdn = |name: &str, share: f64, prefix: &str, quality: (f64, f64, f64, f64, f64, f64)| CdnProfile {
            name: name.to_string(),
            share,
            edges: (11..=14).map(|host| format!("{prefix}.{host}")).collect(),
            origins: (1..=2).map(|host| format!("{prefix}.{host}")).collect(),
            stalls_per_10s: quality.0,
            stall_median_ms: quality.1,
            first_packet_median_ms: quality.2,
            rtt_factor: quality.3,
            startup_skip_median_ms: quality.4,
            startup_skip_zero_share: quality.5,
        };
        let cdns = vec![
            cdn("cdn-a", 0.5, "192.0.2", (0.030, 700.0, 110.0, 1.0, 200.0, 0.55)),
            cdn("cdn-b", 0.3, "198.51.100", (0.035, 750.0, 150.0, 1.1, 350.0, 0.45)),
            cdn("cdn-c", 0.2, "203.0.113", (0.055, 900.0, 220.0, 1.3, 900.0, 0.25)),
        ];

        let strings = |items: &[&str]| items.iter().map(|item| item.to_string()).collect::<Vec<_>>();
        let platforms = vec![
            PlatformProfile {
                platform: Platform::Android,
                share: 0.45,
                os: strings(&["Android 14", "Android 13", "Android 12"]),
                models: strings(&["Pixel 8", "Galaxy S23", "Redmi Note 12", "OnePlus 11"]),
                networks: MOBILE_NETWORKS,
                render_median_ms: 90.0,
            },
            PlatformProfile {
                platform: Platform::Ios,
                share: 0.30,
                os: strings(&["iOS 18.1", "iOS 17.6"]),
                models: strings(&["iPhone 15", "iPhone 14", "iPhone 13"]),
                networks: MOBILE_NETWORKS,
                render_median_ms: 60.0,
            },
            PlatformProfile {
                platform: Platform::Web,
                share: 0.12,
                os: strings(&["Chrome 131", "Safari 18", "Firefox 133"]),
                models: strings(&["browser"]),
                networks: DESKTOP_NETWORKS,
                render_median_ms: 140.0,
            },
            PlatformProfile {
                platform: Platform::Pc,
                share: 0.08,
                os: strings(&["Windows 11", "macOS 15"]),
                models: strings(&["desktop"]),
                networks: DESKTOP_NETWORKS,
                render_median_ms: 80.0,
            },
            PlatformProfile {
                platform: Platform::Tv,
                share: 0.05,
                os: strings(&["Android TV 12", "tvOS 18"]),
                models: strings(&["Bravia X90", "Apple TV 4K"]),
                networks: DESKTOP_NETWORKS,
                render_median_ms: 180.0,
            },
        ];

        let arm = |name: &str| BTreeMap::from([(EXPERIMENT.to_string(), name.to_string())]);
        Catalog {
            rooms: room_ids,
            room_cdf,
            cdns,
            isps: strings(&["telecom", "unicom", "mobile", "cable"]),
            regions: strings(&["north", "east", "south", "west"]),
            app_versions: strings(&["7.12.0", "7.11.3", "7.10.1"]),
            app_version_weights: vec![0.6, 0.3, 0.1],
            platforms,
            arms: [arm("control"), arm("treatment")],
            encoders: strings(&["mediacodec-h264", "videotoolbox-h264", "x264"]),
        }
    }

    /// Draws a room by popularity.
    pub(crate) fn pick_room(&self, rng: &mut StdRng) -> usize {
        let draw: f64 = rng.random();
        let index = self.room_cdf.partition_point(|cumulative| *cumulative < draw);
        index.min(self.rooms.len() - 1)
    }

    /// Draws a CDN by share.
    pub(crate) fn pick_cdn(&self, rng: &mut StdRng) -> usize {
        pick_weighted(rng, self.cdns.iter().map(|cdn| cdn.share))
    }

    /// Draws a platform by share.
    pub(crate) fn pick_platform(&self, rng: &mut StdRng) -> usize {
        pick_weighted(rng, self.platforms.iter().map(|platform| platform.share))
    }

    /// Draws an app version by adoption.
    pub(crate) fn pick_app_version(&self, rng: &mut StdRng) -> usize {
        pick_weighted(rng, self.app_version_weights.iter().copied())
    }

    /// The index of a CDN by name.
    pub(crate) fn cdn_index(&self, name: &str) -> Option<usize> {
        self.cdns.iter().position(|cdn| cdn.name == name)
    }
}

/// Draws an index with probability proportional to its weight (weights need not sum to 1).
pub(crate) fn pick_weighted(rng: &mut StdRng, weights: impl Iterator<Item = f64> + Clone) -> usize {
    let total: f64 = weights.clone().sum();
    let mut remaining = rng.random::<f64>() * total;
    let mut last_index = 0;
    for (index, weight) in weights.enumerate() {
        if remaining < weight {
            return index;
        }
        remaining -= weight;
        last_index = index;
    }
    last_index
}

/// Draws one of `options` by weight.
pub(crate) fn pick_from<T: Copy>(rng: &mut StdRng, options: &[(T, f64)]) -> T {
    let index = pick_weighted(rng, options.iter().map(|(_, weight)| *weight));
    options[index].0
}

/// The network a publisher streams over.
pub(crate) fn pick_publisher_network(rng: &mut StdRng) -> Network {
    pick_from(rng, PUBLISHER_NETWORKS)
}

/// A log-normal draw with the given median and shape.
pub(crate) fn lognormal(rng: &mut StdRng, median: f64, sigma: f64) -> f64 {
    let normal: f64 = StandardNormal.sample(rng);
    median * (sigma * normal).exp()
}

/// An exponential draw with the given mean.
pub(crate) fn exponential(rng: &mut StdRng, mean: f64) -> f64 {
    let unit: f64 = Exp1.sample(rng);
    unit * mean
}

/// A uniform draw in `low..high` (`low` when the range is empty).
pub(crate) fn uniform_u64(rng: &mut StdRng, low: u64, high: u64) -> u64 {
    if high <= low {
        return low;
    }
    rng.random_range(low..high)
}

/// A uniform draw in `low..high`.
pub(crate) fn uniform_f64(rng: &mut StdRng, low: f64, high: f64) -> f64 {
    low + rng.random::<f64>() * (high - low)
}

/// Rounds to one decimal, the precision SDKs report gauges with.
pub(crate) fn one_decimal(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// Rounds a non-negative duration to whole ms, capped.
pub(crate) fn whole_ms(value: f64, cap: u64) -> u64 {
    if value.is_nan() || value <= 0.0 {
        return 0;
    }
    (value.round() as u64).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn room_popularity_is_zipf_like() {
        let catalog = Catalog::new(50);
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0u32; 50];
        for _ in 0..100_000 {
            counts[catalog.pick_room(&mut rng)] += 1;
        }
        assert!(
            counts[0] > counts[1] && counts[1] > counts[9] && counts[9] > counts[49],
            "{counts:?}"
        );
        let top_share = counts[0] as f64 / 100_000.0;
        assert!((0.2..0.35).contains(&top_share), "top room share {top_share}");
    }

    #[test]
    fn weighted_picks_follow_weights() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            counts[pick_weighted(&mut rng, [0.5, 0.3, 0.2].into_iter())] += 1;
        }
        assert!((14_000..16_000).contains(&counts[0]), "{counts:?}");
        assert!((8_000..10_000).contains(&counts[1]), "{counts:?}");
        assert!((5_000..7_000).contains(&counts[2]), "{counts:?}");
    }
}
