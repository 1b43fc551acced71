//! The field table of beacon v1: every field, its kind and range, and which beacon types allow or
//! require it. [`crate::validate`] is driven by this table; `docs/beacons.md` and
//! `schemas/beacon-v1.schema.json` state the same rules for people and for other validators.

use crate::beacon::{BeaconType, EndReason, ErrorCategory, ErrorStage, Network, Platform, Resolver};

/// A set of beacon types, one bit per [`BeaconType`] in contract order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeSet(u16);

impl TypeSet {
    /// No type.
    pub const NONE: TypeSet = TypeSet(0);

    const fn of(kind: BeaconType) -> TypeSet {
        TypeSet(1 << kind as u16)
    }

    const fn or(self, other: TypeSet) -> TypeSet {
        TypeSet(self.0 | other.0)
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: BeaconType) -> bool {
        self.0 & (1 << kind as u16) != 0
    }
}

const PLAY_START: TypeSet = TypeSet::of(BeaconType::PlayStart);
const FIRST_FRAME: TypeSet = TypeSet::of(BeaconType::FirstFrame);
const PLAY_HEARTBEAT: TypeSet = TypeSet::of(BeaconType::PlayHeartbeat);
const PLAY_ERROR: TypeSet = TypeSet::of(BeaconType::PlayError);
const PLAY_END: TypeSet = TypeSet::of(BeaconType::PlayEnd);
const PUSH_START: TypeSet = TypeSet::of(BeaconType::PushStart);
const PUSH_HEARTBEAT: TypeSet = TypeSet::of(BeaconType::PushHeartbeat);
const PUSH_END: TypeSet = TypeSet::of(BeaconType::PushEnd);
const ROOM_JOIN: TypeSet = TypeSet::of(BeaconType::RoomJoin);
const ROOM_LEAVE: TypeSet = TypeSet::of(BeaconType::RoomLeave);

const PLAY: TypeSet = PLAY_START
    .or(FIRST_FRAME)
    .or(PLAY_HEARTBEAT)
    .or(PLAY_ERROR)
    .or(PLAY_END);
const PUSH: TypeSet = PUSH_START.or(PUSH_HEARTBEAT).or(PUSH_END);
const ROOM: TypeSet = ROOM_JOIN.or(ROOM_LEAVE);
const ALL: TypeSet = PLAY.or(PUSH).or(ROOM);
/// Types that carry interval counters.
const INTERVAL: TypeSet = PLAY_HEARTBEAT.or(PLAY_END).or(PUSH_HEARTBEAT).or(PUSH_END);
/// Types whose `interval_ms` must be at least 1. A heartbeat reports a period that has passed; an end
/// beacon may honestly cover no time at all (the session ended right at a heartbeat, which already
/// reported the whole interval), so on `play_end` and `push_end` the table's minimum of 0 applies.
pub const POSITIVE_INTERVAL: TypeSet = PLAY_HEARTBEAT.or(PUSH_HEARTBEAT);

/// The largest integer every JSON implementation represents exactly (2^53 - 1).
pub const MAX_SAFE_INTEGER: u64 = 9_007_199_254_740_991;
/// Earliest accepted `ts`: 2000-01-01T00:00:00Z.
pub const MIN_TS_MS: u64 = 946_684_800_000;
/// Latest accepted `ts` (exclusive bound written as inclusive): 2099-12-31T23:59:59.999Z.
pub const MAX_TS_MS: u64 = 4_102_444_799_999;
/// Ten minutes: the longest interval, first frame or buffer a beacon may report.
const TEN_MINUTES_MS: u64 = 600_000;
/// Ten seconds: startup skip and speed-up are measured over the first 10 s of playback.
const STARTUP_WINDOW_MS: u64 = 10_000;

/// What values a field takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A non-empty string of at most `max_chars` Unicode scalar values.
    Str {
        /// Longest accepted length, in characters.
        max_chars: usize,
    },
    /// An integer in `min..=max`. An integral float such as `12.0` is accepted and stored as `12`.
    Int {
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// A number in `min..=max`.
    Float {
        /// Smallest accepted value.
        min: f64,
        /// Largest accepted value.
        max: f64,
    },
    /// `true` or `false`.
    Bool,
    /// One of the listed strings.
    Enum(&'static [&'static str]),
    /// An IPv4 or IPv6 address in its usual text form.
    Ip,
    /// A string-to-string map (`exp`).
    Map {
        /// Most entries.
        max_entries: usize,
        /// Longest key and longest value, in characters.
        max_chars: usize,
    },
}

/// One field of beacon v1.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Wire name.
    pub name: &'static str,
    /// Values it takes.
    pub kind: Kind,
    /// Types on which it may appear.
    pub allowed: TypeSet,
    /// Types on which it must appear.
    pub required: TypeSet,
}

const fn field(name: &'static str, kind: Kind, allowed: TypeSet, required: TypeSet) -> Field {
    Field {
        name,
        kind,
        allowed,
        required,
    }
}

const fn int(max: u64) -> Kind {
    Kind::Int { min: 0, max }
}

const fn text(max_chars: usize) -> Kind {
    Kind::Str { max_chars }
}

const fn float(max: f64) -> Kind {
    Kind::Float { min: 0.0, max }
}

/// Every field SDKs may send, in contract order.
pub const FIELDS: &[Field] = &[
    field("v", Kind::Int { min: 1, max: 1 }, ALL, ALL),
    field("type", Kind::Enum(BeaconType::NAMES), ALL, ALL),
    field(
        "ts",
        Kind::Int {
            min: MIN_TS_MS,
            max: MAX_TS_MS,
        },
        ALL,
        ALL,
    ),
    field("session_id", text(64), ALL, ALL),
    field("seq", int(MAX_SAFE_INTEGER), ALL, ALL),
    field("room_id", text(128), ALL, ALL),
    field("platform", Kind::Enum(Platform::NAMES), ALL, ALL),
    field("user_id", text(128), ALL, ROOM),
    field("device_id", text(128), ALL, TypeSet::NONE),
    field("app_version", text(64), ALL, TypeSet::NONE),
    field("os", text(64), ALL, TypeSet::NONE),
    field("device_model", text(64), ALL, TypeSet::NONE),
    field("network", Kind::Enum(Network::NAMES), ALL, TypeSet::NONE),
    field("isp", text(64), ALL, TypeSet::NONE),
    field("region", text(64), ALL, TypeSet::NONE),
    field("cdn", text(64), ALL, PLAY.or(PUSH)),
    field("edge_ip", Kind::Ip, ALL, TypeSet::NONE),
    field(
        "exp",
        Kind::Map {
            max_entries: 8,
            max_chars: 64,
        },
        ALL,
        TypeSet::NONE,
    ),
    field("first_frame_ms", int(TEN_MINUTES_MS), FIRST_FRAME, FIRST_FRAME),
    field("dns_ms", int(TEN_MINUTES_MS), FIRST_FRAME, TypeSet::NONE),
    field("connect_ms", int(TEN_MINUTES_MS), FIRST_FRAME, TypeSet::NONE),
    field("first_packet_ms", int(TEN_MINUTES_MS), FIRST_FRAME, TypeSet::NONE),
    field("resolver", Kind::Enum(Resolver::NAMES), FIRST_FRAME, TypeSet::NONE),
    field(
        "rtt_ms",
        int(60_000),
        FIRST_FRAME.or(PLAY_HEARTBEAT).or(PUSH_HEARTBEAT),
        TypeSet::NONE,
    ),
    // At least 1 on heartbeats ([`POSITIVE_INTERVAL`], checked in validate); 0 is valid on end beacons.
    field(
        "interval_ms",
        int(TEN_MINUTES_MS),
        INTERVAL,
        PLAY_HEARTBEAT.or(PUSH_HEARTBEAT),
    ),
    field(
        "watch_ms",
        int(TEN_MINUTES_MS),
        PLAY_HEARTBEAT.or(PLAY_END),
        PLAY_HEARTBEAT,
    ),
    field("stall_count", int(10_000), INTERVAL, PLAY_HEARTBEAT),
    field("stall_ms", int(TEN_MINUTES_MS), INTERVAL, PLAY_HEARTBEAT),
    field("dropped_frames", int(1_000_000), INTERVAL, TypeSet::NONE),
    field("bitrate_kbps", int(1_000_000), PLAY_HEARTBEAT, TypeSet::NONE),
    field("buffer_ms", int(TEN_MINUTES_MS), PLAY_HEARTBEAT, TypeSet::NONE),
    field("latency_ms", int(TEN_MINUTES_MS), PLAY_HEARTBEAT, TypeSet::NONE),
    field("fps", float(240.0), PLAY_HEARTBEAT, TypeSet::NONE),
    field("startup_skip_ms", int(STARTUP_WINDOW_MS), PLAY_HEARTBEAT, TypeSet::NONE),
    field(
        "startup_speedup_ms",
        int(STARTUP_WINDOW_MS),
        PLAY_HEARTBEAT,
        TypeSet::NONE,
    ),
    field("code", text(64), PLAY_ERROR, PLAY_ERROR),
    field("fatal", Kind::Bool, PLAY_ERROR, PLAY_ERROR),
    field("category", Kind::Enum(ErrorCategory::NAMES), PLAY_ERROR, PLAY_ERROR),
    field("stage", Kind::Enum(ErrorStage::NAMES), PLAY_ERROR, TypeSet::NONE),
    // `reason` is an EndReason on play_end and push_end (checked in validate) and free text on room_leave.
    field(
        "reason",
        text(64),
        PLAY_END.or(PUSH_END).or(ROOM_LEAVE),
        PLAY_END.or(PUSH_END),
    ),
    field("first_frame_seen", Kind::Bool, PLAY_END, PLAY_END),
    field(
        "capture_width",
        Kind::Int { min: 1, max: 16_384 },
        PUSH_START,
        TypeSet::NONE,
    ),
    field(
        "capture_height",
        Kind::Int { min: 1, max: 16_384 },
        PUSH_START,
        TypeSet::NONE,
    ),
    field("capture_fps", float(240.0), PUSH_START, TypeSet::NONE),
    field("encoder", text(64), PUSH_START, TypeSet::NONE),
    field("cpu_pct", float(100.0), PUSH_HEARTBEAT, TypeSet::NONE),
    field("mem_mb", float(1_048_576.0), PUSH_HEARTBEAT, TypeSet::NONE),
    field("encode_fps", float(240.0), PUSH_HEARTBEAT, TypeSet::NONE),
    field("target_kbps", int(1_000_000), PUSH_HEARTBEAT, TypeSet::NONE),
    field("output_kbps", int(1_000_000), PUSH_HEARTBEAT, TypeSet::NONE),
];

/// Fields the collector sets; an SDK that sends one is refused.
pub const ENRICHMENT_FIELDS: &[&str] = &["received_at", "event_time", "client_subnet", "key_id"];

/// The accepted `reason` values of `play_end` and `push_end`.
pub const END_REASONS: &[&str] = EndReason::NAMES;

/// Looks a field up by wire name.
pub fn lookup(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|field| field.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_unique_and_required_fields_are_allowed() {
        for (index, field) in FIELDS.iter().enumerate() {
            assert!(
                FIELDS[index + 1..].iter().all(|other| other.name != field.name),
                "{} listed twice",
                field.name
            );
            assert_eq!(
                field.required.0 & !field.allowed.0,
                0,
                "{} is required where it is not allowed",
                field.name
            );
        }
    }

    #[test]
    fn type_sets_cover_every_type_once() {
        for kind in BeaconType::ALL {
            let families = [PLAY, PUSH, ROOM];
            assert_eq!(families.iter().filter(|set| set.contains(*kind)).count(), 1, "{kind}");
        }
    }
}
