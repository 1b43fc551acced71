//! Rooms (spike episodes and their localisation), A/B (intervals) and forecast on hand-built data.

mod common;

use common::{beacon, close, session, write, Row, V};
use qoe_report::{
    ab_report, forecast_report, parse_date, rooms_report, AbParams, ForecastParams, OutputTable, RoomsParams, SpikeRule,
};
use qoe_schemas::tables::Table;

fn day(text: &str) -> chrono::NaiveDate {
    parse_date("--from", text).unwrap()
}

fn column(table: &OutputTable, name: &str) -> Vec<String> {
    table.strings(name).unwrap()
}

#[tokio::test]
async fn rooms_spikes_on_every_cdn_are_the_publisher_and_on_one_cdn_that_cdn() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path();
    let sessions = vec![
        // from 09:45: the spikes at 10:20 and 10:40 have the full 30-minute window of history
        session("sa", "cdn-a", "2026-03-01T09:45:00").t("last_time", "2026-03-01T11:00:00"),
        session("sb", "cdn-b", "2026-03-01T09:45:00").t("last_time", "2026-03-01T11:00:00"),
    ];
    write(wh, Table::PlaySessions, "p.parquet", &sessions);
    let mut room = vec![
        beacon("room_join", "sa", "room-1", "cdn-a", "2026-03-01T09:45:00"),
        beacon("room_join", "sb", "room-1", "cdn-b", "2026-03-01T09:45:00"),
    ];
    for i in 0..6 {
        for cdn in ["cdn-a", "cdn-b"] {
            let id = format!("p{cdn}{i}");
            room.push(beacon(
                "room_leave",
                &id,
                "room-1",
                cdn,
                &format!("2026-03-01T10:20:{:02}", i),
            ));
            room.push(beacon(
                "room_join",
                &id,
                "room-1",
                cdn,
                &format!("2026-03-01T10:20:{:02}", 10 + i),
            ));
        }
        let id = format!("q{i}");
        room.push(beacon(
            "room_leave",
            &id,
            "room-1",
            "cdn-a",
            &format!("2026-03-01T10:40:{:02}", i),
        ));
        room.push(beacon(
            "room_join",
            &id,
            "room-1",
            "cdn-a",
            &format!("2026-03-01T10:40:{:02}", 10 + i),
        ));
        // leaves alone are not an episode
        room.push(beacon(
            "room_leave",
            &format!("r{i}"),
            "room-1",
            "cdn-a",
            &format!("2026-03-01T10:50:{:02}", i),
        ));
        // another room is not reported
        room.push(beacon(
            "room_leave",
            &format!("o{i}"),
            "room-2",
            "cdn-a",
            &format!("2026-03-01T10:20:{:02}", i),
        ));
    }
    write(wh, Table::Room, "r.parquet", &room);
    let params = RoomsParams {
        rooms: vec!["room-1".into()],
        from: day("2026-03-01"),
        to: day("2026-03-01"),
        spike: SpikeRule::default(),
    };
    let report = rooms_report(wh, params.clone()).await.unwrap();
    let e = &report.episodes;
    assert_eq!(e.num_rows(), 2, "{:?}", column(e, "minute"));
    assert_eq!(column(e, "minute"), ["2026-03-01T10:20:00", "2026-03-01T10:40:00"]);
    assert_eq!(column(e, "localisation"), ["publisher", "cdn-a"]);
    assert_eq!(e.f64s("joins").unwrap(), [Some(12.0), Some(6.0)]);
    assert_eq!(e.f64s("leaves").unwrap(), [Some(12.0), Some(6.0)]);
    assert_eq!(e.f64s("serving_cdns").unwrap(), [Some(2.0), Some(2.0)]);
    // the curves: 76 minutes (09:45..11:00) for all, cdn-a, cdn-b
    let m = &report.minutes;
    assert_eq!(m.num_rows(), 3 * 76);
    let (cdns, minutes, viewers) = (column(m, "cdn"), column(m, "minute"), m.f64s("viewers").unwrap());
    let at = |cdn: &str, minute: &str| {
        (0..m.num_rows())
            .find(|&r| cdns[r] == cdn && minutes[r] == minute)
            .unwrap()
    };
    close(viewers[at("all", "2026-03-01T10:30:00")], Some(2.0));
    close(viewers[at("cdn-a", "2026-03-01T10:30:00")], Some(1.0));
    // a higher floor removes both episodes
    let strict = RoomsParams {
        spike: SpikeRule {
            floor: 13,
            ..SpikeRule::default()
        },
        ..params
    };
    assert_eq!(rooms_report(wh, strict).await.unwrap().episodes.num_rows(), 0);
    let out = wh.join("out");
    report.write_outputs(&out).await.unwrap();
    assert!(out.join("room_minutes.parquet").is_file() && out.join("room_episodes.parquet").is_file());
}

fn arm(id: &str, arm: &str, ff: i64, fatal: bool, watch: i64) -> Row {
    session(id, "cdn-a", "2026-03-01T10:00:00")
        .set(
            "exp",
            V::M(vec![("abr_v2".into(), arm.into()), ("other".into(), "x".into())]),
        )
        .i("first_frame_ms", ff)
        .b("fatal_error", fatal)
        .i("watch_ms", watch)
}

#[tokio::test]
async fn ab_arms_with_wilson_newcombe_and_normal_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let rows = vec![
        arm("c1", "control", 1000, true, 60_000),
        arm("c2", "control", 2000, false, 60_000),
        arm("c3", "control", 3000, false, 60_000),
        arm("c4", "control", 4000, false, 60_000),
        arm("t1", "treat", 1000, false, 120_000),
        arm("t2", "treat", 1000, false, 120_000),
        arm("t3", "treat", 2000, false, 120_000),
        arm("t4", "treat", 2000, false, 120_000),
        session("n1", "cdn-a", "2026-03-01T10:00:00").b("fatal_error", true),
    ];
    write(dir.path(), Table::PlaySessions, "p.parquet", &rows);
    let params = AbParams {
        experiment: "abr_v2".into(),
        from: day("2026-03-01"),
        to: day("2026-03-01"),
        control: None,
    };
    let report = ab_report(dir.path(), params.clone()).await.unwrap();
    assert_eq!(report.control.as_deref(), Some("control"));
    let t = &report.metrics;
    let (metrics, arms) = (column(t, "metric"), column(t, "arm"));
    let row = |metric: &str, a: &str| {
        (0..t.num_rows())
            .find(|&r| metrics[r] == metric && arms[r] == a)
            .unwrap()
    };
    let get = |metric: &str, a: &str, c: &str| t.f64s(c).unwrap()[row(metric, a)];
    let near =
        |got: Option<f64>, want: f64, tol: f64| assert!((got.unwrap() - want).abs() < tol, "got {got:?}, want {want}");
    // Wilson 1/4 = [0.0456, 0.6994], 0/4 = [0, 0.4899] (published tables)
    near(get("failure_pct", "control", "value"), 25.0, 1e-9);
    near(get("failure_pct", "control", "ci_low"), 4.56, 0.01);
    near(get("failure_pct", "control", "ci_high"), 69.94, 0.01);
    near(get("failure_pct", "treat", "ci_low"), 0.0, 1e-9);
    near(get("failure_pct", "treat", "ci_high"), 48.99, 0.01);
    // Newcombe: -25 - sqrt(0 + (69.94-25)^2), -25 + sqrt(48.99^2 + (25-4.56)^2)
    near(get("failure_pct", "treat", "diff"), -25.0, 1e-9);
    near(get("failure_pct", "treat", "diff_ci_low"), -69.94, 0.02);
    near(
        get("failure_pct", "treat", "diff_ci_high"),
        -25.0 + (48.99f64.powi(2) + 20.44f64.powi(2)).sqrt(),
        0.02,
    );
    // means: 2500 ± 1.96 * sqrt(1666666.7 / 4); diff -1000 ± 1.96 * sqrt(1666666.7/4 + 333333.3/4)
    near(
        get("first_frame_mean_ms", "control", "ci_low"),
        2500.0 - 1.959964 * 645.4972,
        0.01,
    );
    near(get("first_frame_mean_ms", "treat", "diff"), -1000.0, 1e-9);
    near(
        get("first_frame_mean_ms", "treat", "diff_ci_high"),
        -1000.0 + 1.959964 * 707.1068,
        0.01,
    );
    near(get("first_frame_p50_ms", "control", "value"), 2500.0, 1e-9);
    near(get("first_frame_p50_ms", "treat", "value"), 1500.0, 1e-9);
    near(get("avg_watch_s", "treat", "diff"), 60.0, 1e-9);
    near(get("stall_ratio", "treat", "value"), 0.0, 1e-12);
    // --control swaps the sign
    let swapped = ab_report(
        dir.path(),
        AbParams {
            control: Some("treat".into()),
            ..params.clone()
        },
    )
    .await
    .unwrap();
    let t2 = &swapped.metrics;
    let (m2, a2) = (column(t2, "metric"), column(t2, "arm"));
    let r = (0..t2.num_rows())
        .find(|&r| m2[r] == "failure_pct" && a2[r] == "control")
        .unwrap();
    close(t2.f64s("diff").unwrap()[r], Some(25.0));
    let err = ab_report(
        dir.path(),
        AbParams {
            control: Some("nope".into()),
            ..params
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().starts_with("--control \"nope\": not an arm"), "{err}");
}

#[tokio::test]
async fn forecast_of_a_flat_history_is_flat_with_zero_backtest_error() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sessions, mut plays) = (vec![], vec![]);
    for d in 1..=3 {
        let id = format!("s{d}");
        sessions.push(
            session(&id, "cdn-a", &format!("2026-03-0{d}T10:00:00")).t("last_time", &format!("2026-03-0{d}T10:59:00")),
        );
        plays.push(
            beacon(
                "play_heartbeat",
                &id,
                "room-1",
                "cdn-a",
                &format!("2026-03-0{d}T10:30:00"),
            )
            .i("watch_ms", 1_800_000)
            .i("bitrate_kbps", 1000),
        );
    }
    write(dir.path(), Table::PlaySessions, "p.parquet", &sessions);
    write(dir.path(), Table::Play, "p.parquet", &plays);
    let params = ForecastParams {
        to: day("2026-03-03"),
        history_days: 7,
        profile_days: 7,
    };
    let report = forecast_report(dir.path(), params).await.unwrap();
    let d = &report.daily;
    assert_eq!(d.num_rows(), 1);
    assert_eq!(column(d, "day"), ["2026-03-04"]);
    close(d.f64s("predicted_peak_concurrent").unwrap()[0], Some(1.0));
    close(d.f64s("predicted_watch_hours").unwrap()[0], Some(0.5));
    close(d.f64s("predicted_bytes").unwrap()[0], Some(1000.0 * 1_800_000.0 / 8.0));
    close(d.f64s("backtest_days").unwrap()[0], Some(2.0));
    close(d.f64s("backtest_mape_peak").unwrap()[0], Some(0.0));
    let h = &report.hourly;
    let peaks = h.f64s("predicted_peak_concurrent").unwrap();
    close(peaks[10], Some(1.0));
    close(peaks[9], Some(0.0));
    report.write_outputs(&dir.path().join("out")).await.unwrap();
    // an empty warehouse forecasts nothing, with a note
    let empty = tempfile::tempdir().unwrap();
    let report = forecast_report(
        empty.path(),
        ForecastParams {
            to: day("2026-03-03"),
            history_days: 7,
            profile_days: 7,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.daily.num_rows(), 0);
    assert_eq!(report.notes.len(), 1);
}
