//! Properties of the generated beacon stream: determinism, validity, and the modelled behaviour
//! (failures, startup metrics, the two scripted incidents).

use std::collections::{BTreeMap, HashSet};

use qoe_schemas::{Beacon, BeaconType, ErrorCategory};
use qoe_simulator::{generate, incidents, IncidentKind, SimConfig};

const START_MS: u64 = 1_763_800_000_000;
const MINUTE_MS: u64 = 60_000;

fn small_config(seed: u64, duration_ms: u64) -> SimConfig {
    SimConfig {
        seed,
        start_ms: START_MS,
        duration_ms,
        rooms: 10,
        viewers: 300,
        ..SimConfig::default()
    }
}

fn validate(beacon: &Beacon) -> Result<Beacon, qoe_schemas::FieldError> {
    let value = serde_json::to_value(beacon).expect("a beacon serializes");
    qoe_schemas::validate(value)
}

#[test]
fn same_seed_gives_the_same_stream_and_another_seed_does_not() {
    let config = small_config(42, 10 * MINUTE_MS);
    let first: Vec<Beacon> = generate(&config).collect();
    let second: Vec<Beacon> = generate(&config).collect();
    assert!(first.len() > 10_000, "only {} beacons", first.len());
    assert_eq!(first, second);

    let other: Vec<Beacon> = generate(&small_config(43, 10 * MINUTE_MS)).collect();
    assert_ne!(first, other);
}

#[test]
fn every_beacon_is_valid_ordered_and_unique() {
    let config = small_config(7, 20 * MINUTE_MS);
    let end_ms = START_MS + config.duration_ms;
    let mut identities = HashSet::new();
    let mut previous_ts = 0;
    let mut count = 0;
    for beacon in generate(&config) {
        if let Err(error) = validate(&beacon) {
            panic!("invalid beacon ({error}): {beacon:?}");
        }
        assert!(
            beacon.ts >= previous_ts,
            "ts went back: {} after {previous_ts}",
            beacon.ts
        );
        assert!(
            (START_MS..=end_ms).contains(&beacon.ts),
            "ts {} outside the span",
            beacon.ts
        );
        assert!(beacon.session_id.len() <= 64);
        assert!(beacon.received_at.is_none() && beacon.event_time.is_none());
        assert!(beacon.client_subnet.is_none() && beacon.key_id.is_none());
        previous_ts = beacon.ts;
        assert!(
            identities.insert((beacon.session_id.clone(), beacon.seq)),
            "duplicate ({}, {})",
            beacon.session_id,
            beacon.seq
        );
        count += 1;
    }
    assert!(count > 20_000, "only {count} beacons");
}

#[test]
fn sequence_numbers_count_up_per_session_from_zero_for_new_sessions() {
    let mut next_seq: BTreeMap<String, u64> = BTreeMap::new();
    for beacon in generate(&small_config(9, 10 * MINUTE_MS)) {
        let starts_session = matches!(beacon.kind, BeaconType::RoomJoin | BeaconType::PushStart);
        match next_seq.get(&beacon.session_id) {
            None if starts_session => assert_eq!(beacon.seq, 0, "{beacon:?}"),
            // Sessions already running at the start continue their numbering.
            None => assert!(
                beacon.kind == BeaconType::PlayHeartbeat
                    || beacon.kind == BeaconType::PlayEnd
                    || beacon.kind == BeaconType::PlayError,
                "{beacon:?}"
            ),
            Some(expected) => assert_eq!(beacon.seq, *expected, "{beacon:?}"),
        }
        next_seq.insert(beacon.session_id.clone(), beacon.seq + 1);
    }
}

#[test]
fn about_the_invalid_fraction_fails_validation() {
    let config = SimConfig {
        invalid_fraction: 0.1,
        ..small_config(5, 10 * MINUTE_MS)
    };
    let mut total = 0u64;
    let mut invalid = 0u64;
    for beacon in generate(&config) {
        total += 1;
        if validate(&beacon).is_err() {
            invalid += 1;
        }
    }
    let share = invalid as f64 / total as f64;
    assert!((0.09..0.11).contains(&share), "{invalid} of {total} invalid");

    // The valid content does not depend on the invalid share: the same beacons, some broken.
    let clean: Vec<Beacon> = generate(&small_config(5, 10 * MINUTE_MS)).collect();
    assert_eq!(clean.len() as u64, total);
}

#[test]
fn max_beacons_stops_the_stream() {
    let config = SimConfig {
        max_beacons: Some(1_234),
        ..small_config(1, 10 * MINUTE_MS)
    };
    assert_eq!(generate(&config).count(), 1_234);
}

#[test]
fn concurrency_stays_near_the_target() {
    let config = SimConfig {
        incidents: false,
        ..small_config(3, 30 * MINUTE_MS)
    };
    // Heartbeats per interval approximate the viewers playing at once.
    let mut heartbeats_per_minute: BTreeMap<u64, u64> = BTreeMap::new();
    for beacon in generate(&config) {
        if beacon.kind == BeaconType::PlayHeartbeat && beacon.ts < START_MS + config.duration_ms {
            *heartbeats_per_minute
                .entry((beacon.ts - START_MS) / MINUTE_MS)
                .or_default() += 1;
        }
    }
    for (minute, heartbeats) in &heartbeats_per_minute {
        let playing = *heartbeats as f64 / 6.0;
        assert!(
            (200.0..380.0).contains(&playing),
            "minute {minute}: about {playing} viewers playing"
        );
    }
}

#[test]
fn an_hour_has_failures_and_startup_metrics() {
    let config = SimConfig {
        viewers: 150,
        ..small_config(11, 60 * MINUTE_MS)
    };
    let mut gave_up = 0;
    let mut technical = 0;
    let mut business = 0;
    let mut soft = 0;
    let mut startup = 0;
    let mut first_frames = 0;
    let mut ended_with_error = 0;
    for beacon in generate(&config) {
        match beacon.kind {
            BeaconType::PlayEnd
                if beacon.first_frame_seen == Some(false) && beacon.reason.as_deref() == Some("exit") =>
            {
                gave_up += 1
            }
            BeaconType::PlayEnd if beacon.reason.as_deref() == Some("error") => ended_with_error += 1,
            BeaconType::PlayError => match (beacon.category, beacon.fatal) {
                (Some(ErrorCategory::Technical), Some(true)) => {
                    assert!(beacon.stage.is_some());
                    technical += 1
                }
                (Some(ErrorCategory::Business), Some(true)) => business += 1,
                (Some(ErrorCategory::Technical), Some(false)) => soft += 1,
                other => panic!("unexpected play_error {other:?}"),
            },
            BeaconType::PlayHeartbeat if beacon.startup_skip_ms.is_some() => {
                assert!(beacon.startup_speedup_ms.is_some());
                startup += 1
            }
            BeaconType::FirstFrame => first_frames += 1,
            _ => {}
        }
    }
    assert!(gave_up > 5, "exits before video start: {gave_up}");
    assert!(technical > 5, "fatal technical errors: {technical}");
    assert!(business > 2, "business errors: {business}");
    assert!(soft > 2, "non-fatal errors: {soft}");
    assert_eq!(ended_with_error, technical + business);
    // Nearly every session that reached the first frame reports startup metrics once.
    assert!(
        startup as f64 > first_frames as f64 * 0.9,
        "{startup} startup reports, {first_frames} first frames"
    );
}

#[test]
fn startup_metrics_come_once_per_session() {
    let mut seen = HashSet::new();
    for beacon in generate(&small_config(2, 20 * MINUTE_MS)) {
        if beacon.startup_skip_ms.is_some() {
            assert!(
                seen.insert(beacon.session_id.clone()),
                "second startup report in {}",
                beacon.session_id
            );
        }
    }
    assert!(!seen.is_empty());
}

/// Stall ratio, stall_ms / (watch_ms + stall_ms), of play heartbeats.
#[derive(Default)]
struct StallRatio {
    stall_ms: u64,
    played_ms: u64,
}

impl StallRatio {
    fn add(&mut self, beacon: &Beacon) {
        let stall = beacon.stall_ms.unwrap_or(0);
        self.stall_ms += stall;
        self.played_ms += stall + beacon.watch_ms.unwrap_or(0);
    }

    fn ratio(&self) -> f64 {
        self.stall_ms as f64 / self.played_ms.max(1) as f64
    }
}

#[test]
fn the_cdn_incident_shows_in_cdn_b_stalls_only() {
    let config = SimConfig {
        viewers: 400,
        ..small_config(21, 60 * MINUTE_MS)
    };
    let incident = incidents(&config)
        .into_iter()
        .find(|incident| incident.kind == IncidentKind::CdnStall)
        .expect("a cdn incident");
    assert_eq!(incident.cdn.as_deref(), Some("cdn-b"));
    let mut ratios: BTreeMap<(String, bool), StallRatio> = BTreeMap::new();
    for beacon in generate(&config) {
        if beacon.kind != BeaconType::PlayHeartbeat {
            continue;
        }
        let cdn = beacon.cdn.clone().unwrap_or_default();
        ratios
            .entry((cdn, incident.contains(beacon.ts)))
            .or_default()
            .add(&beacon);
    }
    let ratio = |cdn: &str, inside: bool| ratios[&(cdn.to_string(), inside)].ratio();
    let cdn_b = ratio("cdn-b", true) / ratio("cdn-b", false);
    let cdn_a = ratio("cdn-a", true) / ratio("cdn-a", false);
    assert!(cdn_b > 5.0, "cdn-b stall ratio only {cdn_b:.2}x inside the incident");
    assert!(
        (0.5..1.6).contains(&cdn_a),
        "cdn-a stall ratio {cdn_a:.2}x inside the incident"
    );
}

#[test]
fn the_publisher_jitter_makes_viewers_leave_and_rejoin_on_every_cdn() {
    let config = SimConfig {
        viewers: 1_000,
        ..small_config(31, 30 * MINUTE_MS)
    };
    let jitter = incidents(&config)
        .into_iter()
        .find(|incident| incident.kind == IncidentKind::PublisherJitter)
        .expect("a jitter incident");
    let jitter_room = jitter.room_id.clone().expect("a room");
    let window_minutes = (jitter.end_ms - jitter.start_ms) as f64 / MINUTE_MS as f64;
    let other_minutes = config.duration_ms as f64 / MINUTE_MS as f64 - window_minutes;
    // (in the jitter room, cdn, inside the window) -> (joins, leaves)
    let mut counts: BTreeMap<(bool, String, bool), (u64, u64)> = BTreeMap::new();
    let mut push_stall_ms = 0;
    for beacon in generate(&config) {
        let in_room = beacon.room_id == jitter_room;
        if beacon.kind == BeaconType::PushHeartbeat && in_room && jitter.contains(beacon.ts) {
            push_stall_ms += beacon.stall_ms.unwrap_or(0);
        }
        let is_join = beacon.kind == BeaconType::RoomJoin;
        if !is_join && beacon.kind != BeaconType::RoomLeave {
            continue;
        }
        let cdn = beacon.cdn.clone().expect("room beacons carry the cdn");
        let entry = counts.entry((in_room, cdn, jitter.contains(beacon.ts))).or_default();
        if is_join {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    assert!(push_stall_ms > 10_000, "publisher stalled only {push_stall_ms} ms");
    // Joins and leaves per minute, inside the window and in the other minutes.
    let rates = |in_room: bool, cdn: Option<&str>| {
        let sum = |inside: bool| {
            counts
                .iter()
                .filter(|((room, name, window), _)| {
                    *room == in_room && *window == inside && cdn.is_none_or(|cdn| cdn == name)
                })
                .fold((0u64, 0u64), |sum, (_, (joins, leaves))| {
                    (sum.0 + joins, sum.1 + leaves)
                })
        };
        let (inside, outside) = (sum(true), sum(false));
        (
            (inside.0 as f64 / window_minutes, inside.1 as f64 / window_minutes),
            (outside.0 as f64 / other_minutes, outside.1 as f64 / other_minutes),
        )
    };
    for cdn in ["cdn-a", "cdn-b", "cdn-c"] {
        let ((joins, leaves), (usual_joins, usual_leaves)) = rates(true, Some(cdn));
        assert!(
            joins > 3.0 * usual_joins,
            "{cdn}: {joins} joins/min in the jitter, usually {usual_joins:.1}"
        );
        assert!(
            leaves > 3.0 * usual_leaves,
            "{cdn}: {leaves} leaves/min in the jitter, usually {usual_leaves:.1}"
        );
    }
    // Other rooms see no spike.
    let ((joins, leaves), (usual_joins, usual_leaves)) = rates(false, None);
    assert!(
        joins < 1.5 * usual_joins,
        "other rooms: {joins} joins/min in the jitter, usually {usual_joins:.1}"
    );
    assert!(
        leaves < 1.5 * usual_leaves,
        "other rooms: {leaves} leaves/min in the jitter, usually {usual_leaves:.1}"
    );
}

#[test]
fn no_incidents_means_no_spikes() {
    let config = SimConfig {
        incidents: false,
        ..small_config(31, 30 * MINUTE_MS)
    };
    assert!(incidents(&config).is_empty());
    let mut joins_per_minute: BTreeMap<u64, u64> = BTreeMap::new();
    for beacon in generate(&config) {
        if beacon.kind == BeaconType::RoomJoin {
            *joins_per_minute.entry((beacon.ts - START_MS) / MINUTE_MS).or_default() += 1;
        }
    }
    let average = joins_per_minute.values().sum::<u64>() as f64 / 30.0;
    let busiest = *joins_per_minute.values().max().unwrap_or(&0) as f64;
    assert!(
        busiest < 2.0 * average,
        "busiest minute {busiest} joins, average {average:.1}"
    );
}
