//! The default rules over three simulated hours with both scripted incidents: exactly two alerts
//! fire, each localised (the CDN stall to `cdn-b`, the publisher jitter to the publisher of
//! `room-0001`) and inside its incident, and each resolves after its incident ends.

use qoe_alert::{AlertEvent, AlertState, Evaluator, Level, RuleSet};
use qoe_rollup::{Engine, EngineConfig};
use qoe_simulator::{generate, incidents, IncidentKind, SimConfig};

const START_MS: u64 = 1_763_800_020_000;

fn config(incidents: bool) -> SimConfig {
    SimConfig {
        seed: 7,
        start_ms: START_MS,
        duration_ms: 3 * 3_600_000,
        rooms: 8,
        viewers: 300,
        incidents,
        ..SimConfig::default()
    }
}

/// The simulator's beacons through the rollup engine, and its final emissions through the
/// evaluator with the default rules (with a snapshot and restore every 30 windows, as a driver that
/// restarts would).
fn alert_events(config: &SimConfig) -> Vec<AlertEvent> {
    let mut engine = Engine::new(EngineConfig::default(), None).unwrap();
    let mut evaluator = Evaluator::new(RuleSet::default_rules());
    let mut events = Vec::new();
    let mut windows = 0;
    let mut feed = |emission: qoe_rollup::Emission, evaluator: &mut Evaluator| {
        events.extend(evaluator.observe_emission(&emission).unwrap());
        windows += 1;
        if windows % 30 == 0 {
            let text = serde_json::to_string(&evaluator.snapshot()).unwrap();
            *evaluator = Evaluator::restore(RuleSet::default_rules(), serde_json::from_str(&text).unwrap()).unwrap();
        }
    };
    for (offset, beacon) in generate(config).enumerate() {
        engine.offer(0, offset as i64, &beacon, 0);
        for emission in engine.poll(0) {
            engine.acknowledge(emission.window_start_ms);
            feed(emission, &mut evaluator);
        }
    }
    for emission in engine.finish() {
        feed(emission, &mut evaluator);
    }
    events
}

fn ms(rfc3339: &str) -> u64 {
    let events_time = rfc3339.trim_end_matches('Z');
    let (date, time) = events_time.split_once('T').unwrap();
    let hms: Vec<u64> = time.split(':').map(|part| part.parse().unwrap()).collect();
    assert_eq!(&date[..8], "2025-11-");
    let day: u64 = date[8..].parse().unwrap();
    // 2025-11-01T00:00:00Z is 1_761_955_200_000.
    1_761_955_200_000 + ((day - 1) * 86_400 + hms[0] * 3_600 + hms[1] * 60 + hms[2]) * 1_000
}

#[test]
fn default_rules_raise_the_two_incidents_localised_and_nothing_else() {
    let config = config(true);
    let events = alert_events(&config);
    for event in &events {
        println!(
            "{} {} {:?} {:?} {} .. {:?} {}",
            event.state.as_str(),
            event.rule,
            event.localisation.level,
            event.localisation.target,
            event.starts_at,
            event.ends_at,
            event.summary
        );
    }
    let expected = incidents(&config);
    let firing: Vec<&AlertEvent> = events
        .iter()
        .filter(|event| event.state == AlertState::Firing)
        .collect();
    assert_eq!(firing.len(), 2, "{firing:#?}");

    let stall = expected
        .iter()
        .find(|incident| incident.kind == IncidentKind::CdnStall)
        .unwrap();
    let jitter = expected
        .iter()
        .find(|incident| incident.kind == IncidentKind::PublisherJitter)
        .unwrap();
    let checks = [
        (stall, Level::Cdn, "cdn-b", "cdn-stall"),
        (jitter, Level::Publisher, "room-0001", "viewer-reentry"),
    ];
    for (incident, level, target, rule) in checks {
        let fired = firing
            .iter()
            .find(|event| event.rule == rule)
            .unwrap_or_else(|| panic!("no {rule} alert: {firing:#?}"));
        assert_eq!(
            (fired.localisation.level, fired.localisation.target.as_str()),
            (level, target),
            "{fired:#?}"
        );
        let starts = ms(&fired.starts_at);
        assert!(
            incident.contains(starts),
            "{rule} starts at {} outside {incident:?}",
            fired.starts_at
        );
        // Fired within 5 minutes of the incident's start.
        assert!(ms(&fired.window) < incident.start_ms + 5 * 60_000, "{fired:#?}");
        let resolved: Vec<&AlertEvent> = events
            .iter()
            .filter(|event| event.id == fired.id && event.state == AlertState::Resolved)
            .collect();
        assert_eq!(resolved.len(), 1, "{rule}: {events:#?}");
        let ends = ms(resolved[0].ends_at.as_deref().unwrap());
        assert!(
            ends >= incident.end_ms && ends <= incident.end_ms + 3 * 60_000,
            "{rule}: {resolved:#?} vs {incident:?}"
        );
        assert!(ms(&resolved[0].window) >= incident.end_ms);
    }
    assert_eq!(events.len(), 4, "{events:#?}");
}

#[test]
fn no_incidents_no_alerts() {
    let events = alert_events(&config(false));
    assert!(events.is_empty(), "{events:#?}");
}
