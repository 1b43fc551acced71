//! Golden tests on a warehouse built from simulator data, whose answers come from the simulator's
//! model (`qoe_simulator::incidents`, the 50/30/20 CDN split, the A/B treatment's 20 % fewer stalls,
//! the beacons themselves), not from the reports' code.

mod common;
mod sim;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::{DateTime, NaiveDate};
use qoe_report::{ab_report, cdn_report, rooms_report, AbParams, CdnParams, OutputTable, RoomsParams, SpikeRule};
use qoe_schemas::tables::Table;
use qoe_simulator::{incidents, Incident, IncidentKind};

/// One warehouse for every test of this file (built once, in the target's temporary directory).
fn shared() -> &'static sim::Sim {
    static SIM: OnceLock<sim::Sim> = OnceLock::new();
    SIM.get_or_init(|| {
        let parent = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(parent).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("simulated-warehouse-")
            .tempdir_in(parent)
            .unwrap();
        sim::build_in(sim::config(), dir)
    })
}

fn incident(sim: &sim::Sim, kind: IncidentKind) -> Incident {
    incidents(&sim.config)
        .into_iter()
        .find(|i| i.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} incident"))
}

fn day_of(ms: u64) -> NaiveDate {
    DateTime::from_timestamp_millis(ms as i64).unwrap().date_naive()
}

fn minute_text(ms: u64) -> String {
    DateTime::from_timestamp_millis((ms / 60_000 * 60_000) as i64)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

async fn cdn_daily(sim: &sim::Sim) -> OutputTable {
    cdn_report(
        &sim.warehouse,
        CdnParams {
            from: sim.days[0],
            to: *sim.days.last().unwrap(),
            bounce_secs: 10,
        },
    )
    .await
    .unwrap()
    .daily
}

/// (day, cdn) → value of `column`.
fn by_day_cdn(t: &OutputTable, column: &str) -> BTreeMap<(String, String), Option<f64>> {
    let (days, cdns, values) = (
        t.strings("day").unwrap(),
        t.strings("cdn").unwrap(),
        t.f64s(column).unwrap(),
    );
    (0..t.num_rows())
        .map(|r| ((days[r].clone(), cdns[r].clone()), values[r]))
        .collect()
}

#[tokio::test]
async fn rooms_report_finds_the_publisher_jitter_in_room_0001_and_nothing_else_there() {
    let sim = shared();
    let jitter = incident(sim, IncidentKind::PublisherJitter);
    let room = jitter.room_id.clone().unwrap();
    assert_eq!(room, "room-0001");
    let report = rooms_report(
        &sim.warehouse,
        RoomsParams {
            rooms: vec![room.clone()],
            from: sim.days[0],
            to: *sim.days.last().unwrap(),
            spike: SpikeRule::default(),
        },
    )
    .await
    .unwrap();
    let e = &report.episodes;
    let rows: Vec<(String, String, String)> = (0..e.num_rows())
        .map(|r| {
            (
                e.strings("room_id").unwrap()[r].clone(),
                e.strings("minute").unwrap()[r].clone(),
                e.strings("localisation").unwrap()[r].clone(),
            )
        })
        .collect();
    // the jitter window is one whole minute; the beacons' event time is ts + 150 ms, same minute
    assert_eq!(
        rows,
        vec![(room, minute_text(jitter.start_ms), "publisher".to_string())],
        "episodes of room-0001 (incident {jitter:?})"
    );
    // every CDN serving the room spiked
    let serving = e.f64s("serving_cdns").unwrap()[0].unwrap();
    assert!(serving >= 2.0);
    assert_eq!(e.f64s("spiking_cdns").unwrap()[0], Some(serving));
}

#[tokio::test]
async fn cdn_report_shows_cdn_b_with_the_highest_stall_ratio_on_the_incident_day() {
    let sim = shared();
    let stall = incident(sim, IncidentKind::CdnStall);
    let cdn = stall.cdn.clone().unwrap();
    assert_eq!(cdn, "cdn-b");
    let day = day_of(stall.start_ms).to_string();
    let ratios = by_day_cdn(&cdn_daily(sim).await, "stall_ratio");
    let on_day: Vec<(&String, f64)> = ratios
        .iter()
        .filter(|((d, _), _)| *d == day)
        .map(|((_, c), r)| (c, r.expect("every CDN has watch time")))
        .collect();
    assert_eq!(on_day.len(), 3, "{on_day:?}");
    let worst = on_day.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    assert_eq!(worst.0, &cdn, "stall ratios on {day}: {on_day:?}");
    // and the incident is what makes it worst: cdn-b stalls less on the other day
    let other: Vec<f64> = ratios
        .iter()
        .filter(|((d, c), _)| *d != day && *c == cdn)
        .filter_map(|(_, r)| *r)
        .collect();
    assert!(!other.is_empty());
    assert!(
        other.iter().all(|r| *r < worst.1),
        "{cdn}: {other:?} vs {} on {day}",
        worst.1
    );
}

#[tokio::test]
async fn ab_report_shows_the_treatment_stalling_less_than_control() {
    let sim = shared();
    let report = ab_report(
        &sim.warehouse,
        AbParams {
            experiment: "abr_v2".into(),
            from: sim.days[0],
            to: *sim.days.last().unwrap(),
            control: Some("control".into()),
        },
    )
    .await
    .unwrap();
    let t = &report.metrics;
    let (metrics, arms) = (t.strings("metric").unwrap(), t.strings("arm").unwrap());
    let get = |metric: &str, arm: &str, column: &str| {
        let r = (0..t.num_rows())
            .find(|&r| metrics[r] == metric && arms[r] == arm)
            .unwrap_or_else(|| panic!("no {metric} for {arm}"));
        t.f64s(column).unwrap()[r].unwrap_or_else(|| panic!("{metric} {arm} {column} is null"))
    };
    let (control, treatment) = (
        get("stall_ratio", "control", "value"),
        get("stall_ratio", "treatment", "value"),
    );
    assert!(
        treatment < control,
        "stall ratio: treatment {treatment}, control {control}"
    );
    let (low, high) = (
        get("stall_ratio", "treatment", "diff_ci_low"),
        get("stall_ratio", "treatment", "diff_ci_high"),
    );
    assert!(low < high && high < 0.0, "difference CI [{low}, {high}] must exclude 0");
    // the model: the treatment has 20 % fewer stalls per unit of watch time (tolerance ±0.1 on 0.8)
    let per_hour = get("stalls_per_hour", "treatment", "value") / get("stalls_per_hour", "control", "value");
    assert!(
        (0.7..=0.9).contains(&per_hour),
        "stalls per hour treatment / control = {per_hour}"
    );
    assert!(get("stalls_per_hour", "treatment", "diff_ci_high") < 0.0);
}

#[tokio::test]
async fn plays_per_cdn_follow_the_50_30_20_split() {
    let sim = shared();
    let plays = by_day_cdn(&cdn_daily(sim).await, "plays");
    let mut per_cdn: BTreeMap<String, f64> = BTreeMap::new();
    for ((_, cdn), n) in &plays {
        *per_cdn.entry(cdn.clone()).or_default() += n.unwrap_or(0.0);
    }
    let total: f64 = per_cdn.values().sum();
    assert!(total > 3000.0, "{total} plays: too few for the tolerance below");
    // tolerance: ±4 percentage points (the binomial standard deviation is < 1 point for this many plays)
    for (cdn, share) in [("cdn-a", 0.5), ("cdn-b", 0.3), ("cdn-c", 0.2)] {
        let got = per_cdn.get(cdn).copied().unwrap_or(0.0) / total;
        assert!(
            (got - share).abs() <= 0.04,
            "{cdn}: {got:.3} of plays, expected {share} ± 0.04"
        );
    }
    assert_eq!(per_cdn.len(), 3, "{per_cdn:?}");
}

#[tokio::test]
async fn total_plays_equal_the_distinct_play_sessions_of_the_beacons() {
    let sim = shared();
    let plays = by_day_cdn(&cdn_daily(sim).await, "plays");
    let total: f64 = plays.values().map(|n| n.unwrap_or(0.0)).sum();
    assert_eq!(total, sim.truth.play_sessions as f64);
    // and per start day (sessions crossing midnight count on their first day only)
    let mut per_day: BTreeMap<NaiveDate, usize> = BTreeMap::new();
    for ((day, _), n) in &plays {
        *per_day.entry(day.parse().unwrap()).or_default() += n.unwrap_or(0.0) as usize;
    }
    per_day.retain(|_, n| *n > 0);
    assert_eq!(per_day, sim.truth.sessions_by_start_day);
    assert!(
        sim.truth.crossing_by_start_day[&sim.days[0]] > 0,
        "no session crosses midnight"
    );
}

/// The fix behind the publisher test: the first minutes of a room's data have no full trailing window,
/// so a burst there (a missing history counted as 0) is not a spike; the same burst 40 minutes later is.
#[tokio::test]
async fn rooms_report_declares_no_spike_before_a_full_window_of_history() {
    use common::{beacon, session, write};
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path();
    let sessions = vec![
        session("sa", "cdn-a", "2026-03-01T10:00:00").t("last_time", "2026-03-01T11:00:00"),
        session("sb", "cdn-b", "2026-03-01T10:00:00").t("last_time", "2026-03-01T11:00:00"),
    ];
    write(wh, Table::PlaySessions, "p.parquet", &sessions);
    let mut room = Vec::new();
    for (minute, prefix) in [("10:00", "first"), ("10:29", "early"), ("10:40", "later")] {
        for i in 0..6 {
            for cdn in ["cdn-a", "cdn-b"] {
                let id = format!("{prefix}-{cdn}-{i}");
                let at = |s: u32| format!("2026-03-01T{minute}:{s:02}");
                room.push(beacon("room_leave", &id, "room-1", cdn, &at(i)));
                room.push(beacon("room_join", &id, "room-1", cdn, &at(10 + i)));
            }
        }
    }
    write(wh, Table::Room, "r.parquet", &room);
    let day = qoe_report::parse_date("--from", "2026-03-01").unwrap();
    let report = rooms_report(
        wh,
        RoomsParams {
            rooms: vec!["room-1".into()],
            from: day,
            to: day,
            spike: SpikeRule::default(),
        },
    )
    .await
    .unwrap();
    // 10:00 and 10:29 have 0 and 29 minutes of history (< 30); 10:40 has 40
    assert_eq!(report.episodes.strings("minute").unwrap(), ["2026-03-01T10:40:00"]);
    assert_eq!(report.episodes.strings("localisation").unwrap(), ["publisher"]);
}

/// Found by the DuckDB comparison (tests/analysts.rs): DataFusion's `percentile_cont` truncates the
/// interpolation weight to 6 decimals, so p90 of 1000, 2000, …, 8000 ms (h = 6.3) came out as
/// 7299.999 instead of 7000 + 0.3 × 1000 = 7300. The reports' percentiles are exact.
#[tokio::test]
async fn cdn_report_percentiles_are_exact_continuous() {
    use common::{session, write};
    let dir = tempfile::tempdir().unwrap();
    let sessions: Vec<_> = (1..=8)
        .map(|i| session(&format!("s{i}"), "cdn-a", "2026-03-01T10:00:00").i("first_frame_ms", i * 1000))
        .collect();
    write(dir.path(), Table::PlaySessions, "p.parquet", &sessions);
    let day = qoe_report::parse_date("--from", "2026-03-01").unwrap();
    let report = cdn_report(
        dir.path(),
        CdnParams {
            from: day,
            to: day,
            bounce_secs: 10,
        },
    )
    .await
    .unwrap();
    let p90 = report.daily.f64s("first_frame_p90_ms").unwrap()[0].unwrap();
    assert!((p90 - 7300.0).abs() < 1e-9, "p90 = {p90}");
    assert_eq!(report.daily.f64s("first_frame_p50_ms").unwrap()[0], Some(4500.0));
    assert_eq!(report.daily.f64s("dns_p50_ms").unwrap()[0], None);
}
