//! Unit tests of the evaluator: `for`, resolve and `keep_firing_for`, one event per transition,
//! replays and snapshots, baselines, rule file errors, the incident detector's localisation, and the
//! webhook payload.

use qoe_rollup::{Grain, RollupDoc};

use crate::event::rfc3339;
use crate::{webhook_payloads, AlertEvent, AlertState, Evaluator, Level, RuleSet, WebhookOptions};

const T0: i64 = 1_763_800_020_000;
const MINUTE: i64 = 60_000;

fn doc(minute: i64, grain: Grain, dims: &[&str]) -> RollupDoc {
    let mut doc = RollupDoc {
        timestamp: rfc3339(T0 + minute * MINUTE),
        window_s: 60,
        grain,
        is_final: true,
        ..RollupDoc::default()
    };
    doc.set_dims(&dims.iter().map(|dim| dim.to_string()).collect::<Vec<_>>());
    doc
}

/// A cdn-grain document with the given stall ratio (of 100 s of playback) and sessions.
fn stall_doc(minute: i64, cdn: &str, ratio: f64, sessions: u64) -> RollupDoc {
    RollupDoc {
        stall_ms: (ratio * 100_000.0) as u64,
        watch_ms: ((1.0 - ratio) * 100_000.0) as u64,
        active_sessions: sessions,
        ..doc(minute, Grain::Cdn, &[cdn, "north", "telecom", "ios"])
    }
}

const STALL_RULE: &str = r#"
[[rule]]
name = "cdn-stall"
kind = "threshold"
grain = "cdn"
by = ["cdn"]
metric = "stall_ratio"
op = ">"
value = 0.03
for = "3m"
keep_firing_for = "1m"
min_volume = { metric = "active_sessions", value = 50 }
"#;

/// Runs `rules` over one document list per minute; returns (minute evaluated, event).
fn run(rules: &str, minutes: &[Vec<RollupDoc>]) -> Vec<(i64, AlertEvent)> {
    let mut evaluator = Evaluator::new(RuleSet::from_toml(rules).unwrap());
    let mut events = Vec::new();
    for (minute, docs) in minutes.iter().enumerate() {
        for doc in docs {
            assert!(evaluator.observe(doc).unwrap());
        }
        for event in evaluator.advance(T0 + minute as i64 * MINUTE) {
            events.push((minute as i64, event));
        }
    }
    events
}

fn transitions(events: &[(i64, AlertEvent)]) -> Vec<(i64, AlertState)> {
    events.iter().map(|(minute, event)| (*minute, event.state)).collect()
}

#[test]
fn threshold_fires_after_for_and_resolves_after_keep_firing_for() {
    // Bad in minutes 2..=7 except 5 (one good minute inside keep_firing_for), good from 8 on.
    let bad = [2, 3, 4, 6, 7];
    let minutes: Vec<Vec<RollupDoc>> = (0..12)
        .map(|m| {
            let ratio = if bad.contains(&m) { 0.06 } else { 0.01 };
            vec![
                stall_doc(m, "cdn-b", ratio, 30),
                stall_doc(m, "cdn-b", ratio, 30),
                stall_doc(m, "cdn-a", 0.01, 80),
            ]
        })
        .collect();
    let events = run(STALL_RULE, &minutes);
    // Fires at the third bad minute, stays firing over the good minute 5, resolves at minute 9
    // (two good minutes: more than keep_firing_for after minute 7).
    assert_eq!(
        transitions(&events),
        [(4, AlertState::Firing), (9, AlertState::Resolved)]
    );
    let (firing, resolved) = (&events[0].1, &events[1].1);
    assert_eq!(firing.starts_at, rfc3339(T0 + 2 * MINUTE));
    assert_eq!(resolved.ends_at.as_deref(), Some(rfc3339(T0 + 8 * MINUTE).as_str()));
    assert_eq!(firing.id, resolved.id);
    assert_eq!(
        (firing.localisation.level, firing.localisation.target.as_str()),
        (Level::Cdn, "cdn-b")
    );
    assert_eq!(firing.labels.len(), 1);
    // The two cdn-b documents were summed: 60 sessions pass the volume floor that 30 would not.
    let single: Vec<Vec<RollupDoc>> = minutes.iter().map(|docs| docs[..1].to_vec()).collect();
    assert!(run(STALL_RULE, &single).is_empty());
}

#[test]
fn a_broken_streak_starts_over() {
    let bad = [1, 2, 4, 5, 7, 8];
    let minutes: Vec<Vec<RollupDoc>> = (0..10)
        .map(|m| vec![stall_doc(m, "cdn-b", if bad.contains(&m) { 0.06 } else { 0.0 }, 60)])
        .collect();
    assert!(run(STALL_RULE, &minutes).is_empty());
}

#[test]
fn missing_series_counts_as_not_holding_and_empty_windows_are_skipped() {
    // cdn-b bad in minutes 0..=3, then absent (cdn-a only) in minute 4: resolves at minute 5 (after
    // keep_firing_for). Minute 6 has no document at all: nothing is evaluated for it.
    let mut minutes: Vec<Vec<RollupDoc>> = (0..4).map(|m| vec![stall_doc(m, "cdn-b", 0.1, 60)]).collect();
    minutes.push(vec![stall_doc(4, "cdn-a", 0.0, 60)]);
    minutes.push(vec![stall_doc(5, "cdn-a", 0.0, 60)]);
    let events = run(STALL_RULE, &minutes);
    assert_eq!(
        transitions(&events),
        [(2, AlertState::Firing), (5, AlertState::Resolved)]
    );

    let mut evaluator = Evaluator::new(RuleSet::from_toml(STALL_RULE).unwrap());
    for m in 0..3 {
        evaluator.observe(&stall_doc(m, "cdn-b", 0.1, 60)).unwrap();
    }
    assert_eq!(evaluator.advance(T0 + 2 * MINUTE).len(), 1);
    // A gap of ten empty minutes, then still bad: no transition.
    evaluator.observe(&stall_doc(13, "cdn-b", 0.1, 60)).unwrap();
    assert!(evaluator.advance(T0 + 13 * MINUTE).is_empty());
}

#[test]
fn each_transition_is_emitted_once_and_replays_write_the_same_ids() {
    let minutes: Vec<Vec<RollupDoc>> = (0..10)
        .map(|m| vec![stall_doc(m, "cdn-b", if (2..6).contains(&m) { 0.2 } else { 0.0 }, 60)])
        .collect();
    let rules = RuleSet::from_toml(STALL_RULE).unwrap();
    let mut evaluator = Evaluator::new(rules.clone());
    let mut all = Vec::new();
    let mut snapshot_at_3 = None;
    for (m, docs) in minutes.iter().enumerate() {
        for doc in docs {
            evaluator.observe(doc).unwrap();
        }
        all.extend(evaluator.advance(T0 + m as i64 * MINUTE));
        // Advancing again to the same window, and observing its documents again, changes nothing.
        assert!(evaluator.advance(T0 + m as i64 * MINUTE).is_empty());
        assert!(!evaluator.observe(&docs[0]).unwrap());
        if m == 3 {
            snapshot_at_3 = Some(serde_json::to_string(&evaluator.snapshot()).unwrap());
        }
    }
    assert_eq!(all.len(), 2);
    // A crash after minute 3's snapshot, with the events of minutes 4.. already written (the firing
    // in minute 4, the resolution in minute 7): the restored evaluator skips the replayed minutes
    // 0..=3 and writes the same events again, with the same ids.
    let snapshot = serde_json::from_str(&snapshot_at_3.unwrap()).unwrap();
    let mut restored = Evaluator::restore(rules, snapshot).unwrap();
    let mut again = Vec::new();
    for (m, docs) in minutes.iter().enumerate() {
        for doc in docs {
            restored.observe(doc).unwrap();
        }
        again.extend(restored.advance(T0 + m as i64 * MINUTE));
    }
    assert_eq!(again, all);
}

#[test]
fn early_documents_and_bad_timestamps_are_refused() {
    let mut evaluator = Evaluator::new(RuleSet::default_rules());
    let early = RollupDoc {
        is_final: false,
        ..stall_doc(0, "cdn-a", 0.0, 1)
    };
    assert!(evaluator.observe(&early).unwrap_err().to_string().contains("not final"));
    let bad = RollupDoc {
        timestamp: "yesterday".to_string(),
        ..stall_doc(0, "cdn-a", 0.0, 1)
    };
    assert_eq!(
        evaluator.observe(&bad).unwrap_err().to_string(),
        "@timestamp \"yesterday\": not an RFC 3339 UTC time like 2026-11-20T09:31:00Z"
    );
}

#[test]
fn baseline_fires_on_deviation_from_the_trailing_median() {
    let rules = r#"
[[rule]]
name = "startup"
kind = "baseline"
grain = "cdn"
by = ["cdn"]
metric = "first_frames"
deviation = { mad = 3.0 }
min_delta = 5
trailing = "10m"
min_history = "5m"
"#;
    let minutes: Vec<Vec<RollupDoc>> = (0..20)
        .map(|m| {
            let value = match m {
                // Too little history to judge: not an alert.
                2 => 500,
                12 | 13 => 60,
                // Inside median ± max(3 × 1.4826 × MAD, 5).
                15 => 26,
                _ => 20 + (m % 3) as u64,
            };
            vec![RollupDoc {
                first_frames: value,
                ..doc(m, Grain::Cdn, &["cdn-a", "north", "telecom", "ios"])
            }]
        })
        .collect();
    let events = run(rules, &minutes);
    assert_eq!(
        transitions(&events),
        [(12, AlertState::Firing), (14, AlertState::Resolved)]
    );
    assert_eq!(events[0].1.value, Some(60.0));
    // Median of minutes 2..=11 is 21, MAD 1: bound 21 + max(3 × 1.4826, 5) = 26.
    assert_eq!(events[0].1.threshold, Some(26.0));
}

#[test]
fn rule_file_errors_name_the_rule_and_the_field() {
    let error = |text: &str| RuleSet::from_toml(text).unwrap_err().to_string();
    let rule = |body: &str| format!("[[rule]]\nname = \"r\"\n{body}");
    let threshold = "kind = \"threshold\"\ngrain = \"cdn\"\nop = \">\"\nvalue = 1.0\n";
    assert_eq!(
        error(&rule(&format!("{threshold}metric = \"stal_ratio\""))),
        r#"rule "r": metric "stal_ratio": not a numeric rollup field"#
    );
    assert_eq!(
        error(&rule(&format!("{threshold}metric = \"joins\"\nfor = \"3 minutes\""))),
        r#"rule "r": for "3 minutes": not a duration like "90s", "3m" or "1h" (at most 7 days)"#
    );
    assert_eq!(
        error(&rule(&format!("{threshold}metric = \"joins\"\nby = [\"edge_ip\"]"))),
        r#"rule "r": by "edge_ip": not a dimension of grain cdn (cdn, region, isp, platform)"#
    );
    assert_eq!(
        error(&rule(&format!(
            "{threshold}metric = \"joins\"\nwhere = {{ room_id = \"x\" }}"
        ))),
        r#"rule "r": where "room_id": not a dimension of grain cdn (cdn, region, isp, platform)"#
    );
    assert!(error(&rule(&format!("{threshold}metric = \"joins\"\nthreshold = 2")))
        .starts_with("rule \"r\": unknown field `threshold`"));
    assert!(error(&rule("kind = \"trend\"")).starts_with("rule \"r\": unknown variant `trend`"));
    assert!(error("[[rule]]\nkind = \"threshold\"").starts_with("rule #1: missing field"));
    assert!(error("rules = 1").starts_with("rule file: unknown field `rules`"));
    let twice = rule(&format!("{threshold}metric = \"joins\"\n"));
    assert_eq!(
        error(&format!("{twice}{twice}")),
        r#"rule "r": name: used by an earlier rule"#
    );
    let baseline = "kind = \"baseline\"\ngrain = \"cdn\"\nmetric = \"joins\"\ntrailing = \"10m\"\n";
    assert_eq!(
        error(&rule(&format!(
            "{baseline}deviation = {{ ratio = 0.5 }}\nmin_history = \"5m\""
        ))),
        r#"rule "r": deviation.ratio: must be above 1, got 0.5"#
    );
    assert_eq!(
        error(&rule(&format!(
            "{baseline}deviation = {{ mad = 3.0 }}\nmin_history = \"1h\""
        ))),
        r#"rule "r": min_history: must not be longer than trailing"#
    );
    // Every message is lowercase-led and has no trailing period.
    assert!(!error(&rule("kind = \"trend\"")).ends_with('.'));
}

#[test]
fn the_default_rules_parse() {
    let rules = RuleSet::default_rules();
    let kinds: Vec<&str> = rules.rules().map(|rule| rule.kind()).collect();
    assert_eq!(kinds, ["threshold", "incident", "baseline"]);
}

#[test]
fn webhook_payloads_follow_alertmanager_version_4() {
    let minutes: Vec<Vec<RollupDoc>> = (0..6)
        .map(|m| vec![stall_doc(m, "cdn-b", if m < 3 { 0.2 } else { 0.0 }, 60)])
        .collect();
    let events: Vec<AlertEvent> = run(STALL_RULE, &minutes).into_iter().map(|(_, event)| event).collect();
    let options = WebhookOptions {
        receiver: "qoe".to_string(),
        external_url: "http://kibana:5601".to_string(),
        generator_url: "http://qoe/rules".to_string(),
    };
    let payloads = webhook_payloads(&events, &options);
    assert_eq!(payloads.len(), 1);
    let json = serde_json::to_value(&payloads[0]).unwrap();
    assert_eq!(json["version"], "4");
    assert_eq!(json["groupKey"], "{}:{alertname=\"cdn-stall\"}");
    assert_eq!(json["status"], "firing");
    assert_eq!(json["externalURL"], "http://kibana:5601");
    assert_eq!(json["groupLabels"], serde_json::json!({"alertname": "cdn-stall"}));
    assert_eq!(json["commonLabels"]["cdn"], "cdn-b");
    let firing = &json["alerts"][0];
    assert_eq!(firing["status"], "firing");
    assert_eq!(firing["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(firing["labels"]["level"], "cdn");
    assert_eq!(firing["generatorURL"], "http://qoe/rules?rule=cdn-stall");
    assert_eq!(firing["fingerprint"].as_str().unwrap().len(), 16);
    let resolved = &json["alerts"][1];
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["endsAt"], rfc3339(T0 + 3 * MINUTE));
    assert_eq!(resolved["fingerprint"], firing["fingerprint"]);
}
