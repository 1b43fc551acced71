//! The beacon v1 record: one flat struct for every beacon type.
//!
//! A beacon is a wide event: the fields common to every type, then the fields of each type, all of them
//! optional in the struct. [`crate::validate`] is the only way SDK input becomes a [`Beacon`], and it
//! guarantees that the fields present are exactly those the type allows and that required ones are set.
//! The collector adds the enrichment fields (`received_at`, `event_time`, `client_subnet`, `key_id`)
//! before the record is written to Kafka; SDKs may not send them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The only contract version this crate speaks.
pub const BEACON_VERSION: u64 = 1;

/// The Kafka topic that carries accepted, enriched beacons.
pub const BEACONS_TOPIC: &str = "qoe.beacons.v1";

/// The Kafka topic that carries rejected beacons with the reason.
pub const DLQ_TOPIC: &str = "qoe.beacons.dlq";

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        pub enum $name {
            $(
                #[doc = concat!("`", $text, "`")]
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// Every value, in contract order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every wire spelling, in contract order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// Parses the wire spelling.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        /// Only the string form: serde's derived enum visitor would also take `{"variant": null}`.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Names;
                impl<'de> serde::de::Visitor<'de> for Names {
                    type Value = $name;
                    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(formatter, "one of {}", $name::NAMES.join(", "))
                    }
                    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<$name, E> {
                        $name::parse(text).ok_or_else(|| E::unknown_variant(text, $name::NAMES))
                    }
                }
                deserializer.deserialize_str(Names)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// What a beacon reports.
    BeaconType {
        PlayStart => "play_start",
        FirstFrame => "first_frame",
        PlayHeartbeat => "play_heartbeat",
        PlayError => "play_error",
        PlayEnd => "play_end",
        PushStart => "push_start",
        PushHeartbeat => "push_heartbeat",
        PushEnd => "push_end",
        RoomJoin => "room_join",
        RoomLeave => "room_leave",
    }
}

string_enum! {
    /// The client platform.
    Platform {
        Android => "android",
        Ios => "ios",
        Web => "web",
        Pc => "pc",
        Tv => "tv",
        Other => "other",
    }
}

string_enum! {
    /// The client's network type.
    Network {
        Wifi => "wifi",
        G2 => "2g",
        G3 => "3g",
        G4 => "4g",
        G5 => "5g",
        Ethernet => "ethernet",
        Unknown => "unknown",
    }
}

string_enum! {
    /// How the player resolved the CDN host name.
    Resolver {
        LocalDns => "localdns",
        HttpDns => "httpdns",
        Cached => "cached",
    }
}

string_enum! {
    /// Whether an error is a technical failure or a business refusal (geo block, paywall, ...).
    ErrorCategory {
        Technical => "technical",
        Business => "business",
    }
}

string_enum! {
    /// The stage of the play pipeline where an error happened.
    ErrorStage {
        Dns => "dns",
        Connect => "connect",
        FirstPacket => "first_packet",
        Decode => "decode",
        Playback => "playback",
    }
}

string_enum! {
    /// Why a play or push session ended.
    EndReason {
        Exit => "exit",
        Error => "error",
        Switch => "switch",
        Background => "background",
        Ended => "ended",
    }
}

/// `play_start`: the default only so that beacons can be built field by field (`..Default::default()`).
impl Default for BeaconType {
    fn default() -> Self {
        BeaconType::PlayStart
    }
}

/// `other`: the default only so that beacons can be built field by field (`..Default::default()`).
impl Default for Platform {
    fn default() -> Self {
        Platform::Other
    }
}

/// The family a beacon type belongs to: one warehouse table and one rollup grain family each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Viewer playback: `play_*` and `first_frame`.
    Play,
    /// Publisher (broadcaster) side: `push_*`.
    Push,
    /// Room presence: `room_join`, `room_leave`.
    Room,
}

impl BeaconType {
    /// The family of this type.
    pub fn family(self) -> Family {
        match self {
            BeaconType::PlayStart
            | BeaconType::FirstFrame
            | BeaconType::PlayHeartbeat
            | BeaconType::PlayError
            | BeaconType::PlayEnd => Family::Play,
            BeaconType::PushStart | BeaconType::PushHeartbeat | BeaconType::PushEnd => Family::Push,
            BeaconType::RoomJoin | BeaconType::RoomLeave => Family::Room,
        }
    }
}

/// One beacon v1, as validated by [`crate::validate`] and, once enriched, as written to Kafka.
///
/// Field meanings, units and ranges are documented in `docs/beacons.md`; the per-type rules live in
/// [`crate::fields`]. Deserializing refuses unknown fields and `null` values (an absent optional
/// field is omitted, never null), so the serde form is as strict as the contract's shape; the
/// ranges and per-type rules are checked by [`crate::validate`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Beacon {
    /// Contract version, always 1.
    pub v: u64,
    /// Beacon type.
    #[serde(rename = "type")]
    pub kind: BeaconType,
    /// Client clock, epoch milliseconds.
    pub ts: u64,
    /// Play or push session id (at most 64 characters).
    pub session_id: String,
    /// Per-session sequence number; `(session_id, seq)` identifies a beacon.
    pub seq: u64,
    /// Room (live stream) id (at most 128 characters).
    pub room_id: String,
    /// Client platform.
    pub platform: Platform,

    /// Logged-in user, if any.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Stable device id.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// App version.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    /// Operating system and version.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// Device model.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub device_model: Option<String>,
    /// Network type.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Internet service provider, as the SDK knows it.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub isp: Option<String>,
    /// Region of the client.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// CDN serving (play) or ingesting (push) the stream.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub cdn: Option<String>,
    /// CDN edge node (viewers) or origin (publishers), an IP address.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub edge_ip: Option<String>,
    /// A/B experiment assignments, experiment name to arm.
    #[serde(
        default,
        deserialize_with = "present_unique_map",
        skip_serializing_if = "Option::is_none"
    )]
    pub exp: Option<BTreeMap<String, String>>,

    /// `first_frame`: play request to first rendered frame, ms.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub first_frame_ms: Option<u64>,
    /// `first_frame`: DNS resolution part, ms.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub dns_ms: Option<u64>,
    /// `first_frame`: TCP/QUIC connect part, ms.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<u64>,
    /// `first_frame`: request to first media packet part, ms.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub first_packet_ms: Option<u64>,
    /// `first_frame`: how the host name was resolved.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub resolver: Option<Resolver>,
    /// Round-trip time to the edge (viewers) or origin (publishers), ms.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<u64>,

    /// Length of the interval the counters cover, ms.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// Time spent playing (frames advancing) in the interval, ms.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub watch_ms: Option<u64>,
    /// Stalls that started in the interval.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub stall_count: Option<u64>,
    /// Time spent stalled in the interval, ms.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub stall_ms: Option<u64>,
    /// Frames dropped in the interval.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub dropped_frames: Option<u64>,
    /// Gauge: current bitrate, kbit/s.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub bitrate_kbps: Option<u64>,
    /// Gauge: buffered media, ms.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub buffer_ms: Option<u64>,
    /// Gauge: end-to-end live latency, ms.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Gauge: rendered frames per second.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// Once per session: media dropped in the first 10 s after the first frame, ms.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub startup_skip_ms: Option<u64>,
    /// Once per session: media consumed by accelerated playback in the first 10 s, ms.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub startup_speedup_ms: Option<u64>,

    /// `play_error`: player error code.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// `play_error`: whether playback stopped.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub fatal: Option<bool>,
    /// `play_error`: technical or business.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub category: Option<ErrorCategory>,
    /// `play_error`: where it happened.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub stage: Option<ErrorStage>,

    /// `play_end`, `push_end`: an [`EndReason`]; `room_leave`: free text.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `play_end`: whether the session ever rendered a frame.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub first_frame_seen: Option<bool>,

    /// `push_start`: capture width, px.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub capture_width: Option<u64>,
    /// `push_start`: capture height, px.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub capture_height: Option<u64>,
    /// `push_start`: capture frame rate.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub capture_fps: Option<f64>,
    /// `push_start`: encoder name.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub encoder: Option<String>,
    /// `push_heartbeat`: app CPU use, percent of the whole device.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub cpu_pct: Option<f64>,
    /// `push_heartbeat`: app memory, MB.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub mem_mb: Option<f64>,
    /// `push_heartbeat`: encoder output frame rate.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub encode_fps: Option<f64>,
    /// `push_heartbeat`: bitrate the adaptive-bitrate controller aims at, kbit/s.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub target_kbps: Option<u64>,
    /// `push_heartbeat`: bitrate actually sent, kbit/s.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub output_kbps: Option<u64>,

    /// Enrichment: when the collector received the request, epoch ms.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub received_at: Option<u64>,
    /// Enrichment: `ts` corrected for client clock skew, epoch ms.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub event_time: Option<u64>,
    /// Enrichment: client address truncated to /24 (IPv4) or /48 (IPv6), CIDR notation.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub client_subnet: Option<String>,
    /// Enrichment: id of the write key the request used.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// Deserializes an optional field that, when present, must hold a value (`null` is refused).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Deserializes `exp`, refusing a key given twice (a JSON object may repeat keys; a map may not).
fn present_unique_map<'de, D>(deserializer: D) -> Result<Option<BTreeMap<String, String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct UniqueMap;
    impl<'de> serde::de::Visitor<'de> for UniqueMap {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("an object of strings")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
            let mut map = BTreeMap::new();
            while let Some((key, value)) = access.next_entry::<String, String>()? {
                if map.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!("exp: key {key:?} given twice")));
                }
                map.insert(key, value);
            }
            Ok(map)
        }
    }
    deserializer.deserialize_map(UniqueMap).map(Some)
}

impl Beacon {
    /// The event time if the collector set it, else the client timestamp.
    pub fn event_time_ms(&self) -> u64 {
        self.event_time.unwrap_or(self.ts)
    }

    /// The de-duplication identity of the beacon.
    pub fn identity(&self) -> (&str, u64) {
        (&self.session_id, self.seq)
    }
}
