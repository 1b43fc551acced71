//! The CDN report on a hand-built warehouse with hand-computed answers.

mod common;

use std::path::Path;

use common::{beacon, close, session, write, write_file, Row};
use qoe_report::{cdn_report, parse_date, CdnParams, OutputTable};
use qoe_schemas::tables::Table;

const DAY1: &str = "2026-03-01";
const DAY2: &str = "2026-03-02";

fn ff(row: Row, ff: i64, dns: i64, connect: i64, first_packet: i64) -> Row {
    row.i("first_frame_ms", ff)
        .i("dns_ms", dns)
        .i("connect_ms", connect)
        .i("first_packet_ms", first_packet)
}

/// Two CDNs over two days: see the expected values in the tests below.
pub fn build(warehouse: &Path) {
    let sessions = vec![
        ff(session("a1", "cdn-a", "2026-03-01T10:00:00"), 1000, 10, 20, 100)
            .t("last_time", "2026-03-01T10:05:30")
            .i("watch_ms", 300_000)
            .i("startup_skip_ms", 0)
            .i("max_latency_ms", 2000)
            .s("region", "eu")
            .s("isp", "isp1"),
        ff(session("a2", "cdn-a", "2026-03-01T10:01:00"), 2000, 30, 40, 200)
            .t("last_time", "2026-03-01T10:02:00")
            .i("watch_ms", 60_000)
            .i("stall_ms", 6000)
            .i("stall_count", 2)
            .i("startup_skip_ms", 500)
            .i("max_latency_ms", 4000)
            .s("region", "eu")
            .s("isp", "isp2"),
        // exit before video start, and no play_start beacon
        session("a3", "cdn-a", "2026-03-01T10:03:00")
            .t("last_time", "2026-03-01T10:03:10")
            .b("has_play_start", false)
            .b("ebvs", true)
            .s("end_reason", "exit")
            .b("first_frame_seen", false)
            .s("region", "us")
            .s("isp", "isp1"),
        // fatal technical error
        session("a4", "cdn-a", "2026-03-01T11:00:00")
            .t("last_time", "2026-03-01T11:00:05")
            .i("errors", 1)
            .b("fatal_error", true)
            .s("fatal_error_code", "E1")
            .s("region", "us")
            .s("isp", "isp1"),
        // crosses midnight: counted on day 1, concurrent on both days
        ff(session("a5", "cdn-a", "2026-03-01T23:59:00"), 3000, 50, 60, 300)
            .t("last_time", "2026-03-02T00:03:00")
            .i("watch_ms", 240_000)
            .s("region", "eu")
            .s("isp", "isp1"),
        // business error
        session("b1", "cdn-b", "2026-03-01T12:00:00")
            .i("first_frame_ms", 1500)
            .t("last_time", "2026-03-01T12:00:30")
            .i("watch_ms", 30_000)
            .i("errors", 1)
            .b("business_error", true)
            .s("region", "eu"),
        session("b2", "cdn-b", "2026-03-01T12:00:30")
            .i("first_frame_ms", 2500)
            .t("last_time", "2026-03-01T12:02:00")
            .i("watch_ms", 90_000)
            .i("stall_ms", 10_000)
            .i("stall_count", 1)
            .s("region", "eu"),
        session("b3", "cdn-b", "2026-03-02T09:00:00")
            .i("first_frame_ms", 1200)
            .t("last_time", "2026-03-02T09:01:00")
            .i("watch_ms", 60_000),
    ];
    write(warehouse, Table::PlaySessions, "part-0.parquet", &sessions);
    let room = |kind: &str, id: &str, cdn: &str, at: &str, region: &str| {
        beacon(kind, id, "room-1", cdn, at).s("region", region)
    };
    let rooms = vec![
        room("room_join", "a1", "cdn-a", "2026-03-01T10:00:00", "eu"),
        room("room_leave", "a1", "cdn-a", "2026-03-01T10:05:30", "eu"),
        room("room_join", "a2", "cdn-a", "2026-03-01T10:01:00", "eu"),
        room("room_leave", "a2", "cdn-a", "2026-03-01T10:01:05", "eu"),
        room("room_join", "a3", "cdn-a", "2026-03-01T10:03:00", "us"),
        room("room_leave", "a3", "cdn-a", "2026-03-01T10:03:15", "us"),
        room("room_join", "b1", "cdn-b", "2026-03-01T12:00:00", "eu"),
        room("room_leave", "b1", "cdn-b", "2026-03-01T12:00:10", "eu"),
        room("room_join", "a5", "cdn-a", "2026-03-01T23:59:00", "eu"),
        room("room_leave", "a5", "cdn-a", "2026-03-02T00:03:05", "eu"),
    ];
    write(warehouse, Table::Room, "part-0.parquet", &rooms);
    // In-progress files: must be ignored (they would add a failed play on cdn-a).
    let bogus = vec![session("zz", "cdn-a", "2026-03-01T10:00:00").b("fatal_error", true)];
    let dir = warehouse.join("play_sessions/dt=2026-03-01/hour=10");
    write_file(&dir.join(".part-1.parquet"), Table::PlaySessions, &bogus);
    write_file(&dir.join("part-2.parquet.tmp"), Table::PlaySessions, &bogus);
}

pub fn params(bounce_secs: u32) -> CdnParams {
    CdnParams {
        from: parse_date("--from", DAY1).unwrap(),
        to: parse_date("--to", DAY2).unwrap(),
        bounce_secs,
    }
}

/// The row whose key columns have these values.
pub fn find(table: &OutputTable, keys: &[(&str, &str)]) -> usize {
    let columns: Vec<Vec<String>> = keys.iter().map(|(c, _)| table.strings(c).unwrap()).collect();
    let rows: Vec<usize> = (0..table.num_rows())
        .filter(|&row| keys.iter().zip(&columns).all(|((_, v), col)| col[row] == *v))
        .collect();
    assert_eq!(rows.len(), 1, "{keys:?} in {}", table.name);
    rows[0]
}

pub fn get(table: &OutputTable, row: usize, column: &str) -> Option<f64> {
    table.f64s(column).unwrap()[row]
}

#[tokio::test]
async fn cdn_daily_matches_hand_computed_values() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let report = cdn_report(dir.path(), params(10)).await.unwrap();
    let t = &report.daily;
    assert_eq!(t.num_rows(), 4, "(day1, day2) x (cdn-a, cdn-b)");
    let a1 = find(t, &[("day", DAY1), ("cdn", "cdn-a")]);
    let v = |c| get(t, a1, c);
    close(v("plays"), Some(5.0));
    close(v("plays_with_play_start"), Some(4.0));
    close(v("failure_pct"), Some(20.0));
    close(v("business_error_pct"), Some(0.0));
    close(v("ebvs_pct"), Some(20.0));
    close(v("first_frames"), Some(3.0));
    // continuous percentiles (DuckDB quantile_cont): p90 of [1000, 2000, 3000] = 2000 + 0.8 * 1000
    close(v("first_frame_p50_ms"), Some(2000.0));
    close(v("first_frame_p90_ms"), Some(2800.0));
    close(v("dns_p50_ms"), Some(30.0));
    close(v("dns_p90_ms"), Some(46.0));
    close(v("connect_p50_ms"), Some(40.0));
    close(v("connect_p90_ms"), Some(56.0));
    close(v("first_packet_p50_ms"), Some(200.0));
    close(v("first_packet_p90_ms"), Some(280.0));
    close(v("stall_ratio"), Some(6000.0 / 606_000.0));
    close(v("stalls_per_hour"), Some(12.0));
    close(v("startup_skip_avg_ms"), Some(250.0));
    close(v("startup_skip_share"), Some(0.5));
    close(v("latency_p90_ms"), Some(3800.0));
    close(v("avg_watch_s"), Some(120.0));
    close(v("watch_hours"), Some(600_000.0 / 3_600_000.0));
    close(v("joins"), Some(4.0));
    close(v("leaves"), Some(3.0));
    close(v("bounce_rate"), Some(0.25));
    close(v("peak_concurrent"), Some(2.0));

    // day 2 on cdn-a: only the midnight-crossing session watching, and a leave: no plays → null rates
    let a2 = find(t, &[("day", DAY2), ("cdn", "cdn-a")]);
    close(get(t, a2, "plays"), Some(0.0));
    close(get(t, a2, "failure_pct"), None);
    close(get(t, a2, "stall_ratio"), None);
    close(get(t, a2, "first_frame_p50_ms"), None);
    close(get(t, a2, "peak_concurrent"), Some(1.0));
    close(get(t, a2, "leaves"), Some(1.0));
    close(get(t, a2, "joins"), Some(0.0));
    close(get(t, a2, "bounce_rate"), None);

    let b1 = find(t, &[("day", DAY1), ("cdn", "cdn-b")]);
    let v = |c| get(t, b1, c);
    close(v("plays"), Some(2.0));
    close(v("failure_pct"), Some(0.0));
    close(v("business_error_pct"), Some(50.0));
    close(v("ebvs_pct"), Some(0.0));
    close(v("first_frame_p50_ms"), Some(2000.0));
    close(v("first_frame_p90_ms"), Some(2400.0));
    close(v("dns_p50_ms"), None);
    close(v("stall_ratio"), Some(10_000.0 / 130_000.0));
    close(v("stalls_per_hour"), Some(30.0));
    close(v("startup_skip_share"), None);
    close(v("bounce_rate"), Some(1.0));
    close(v("peak_concurrent"), Some(2.0));
    let b2 = find(t, &[("day", DAY2), ("cdn", "cdn-b")]);
    close(get(t, b2, "plays"), Some(1.0));
    close(get(t, b2, "peak_concurrent"), Some(1.0));
}

#[tokio::test]
async fn bounce_window_is_a_parameter() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let report = cdn_report(dir.path(), params(20)).await.unwrap();
    let row = find(&report.daily, &[("day", DAY1), ("cdn", "cdn-a")]);
    close(get(&report.daily, row, "bounce_rate"), Some(0.5));
    let report = cdn_report(dir.path(), params(4)).await.unwrap();
    let row = find(&report.daily, &[("day", DAY1), ("cdn", "cdn-a")]);
    close(get(&report.daily, row, "bounce_rate"), Some(0.0));
}

#[tokio::test]
async fn region_and_isp_breakdowns() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let report = cdn_report(dir.path(), params(10)).await.unwrap();
    let t = &report.region_daily;
    let eu = find(t, &[("day", DAY1), ("cdn", "cdn-a"), ("region", "eu")]);
    close(get(t, eu, "plays"), Some(3.0));
    close(get(t, eu, "failure_pct"), Some(0.0));
    close(get(t, eu, "joins"), Some(3.0));
    close(get(t, eu, "bounce_rate"), Some(1.0 / 3.0));
    let us = find(t, &[("day", DAY1), ("cdn", "cdn-a"), ("region", "us")]);
    close(get(t, us, "plays"), Some(2.0));
    close(get(t, us, "failure_pct"), Some(50.0));
    close(get(t, us, "ebvs_pct"), Some(50.0));
    let unknown = find(t, &[("day", DAY2), ("cdn", "cdn-b"), ("region", "unknown")]);
    close(get(t, unknown, "plays"), Some(1.0));
    let t = &report.isp_daily;
    let isp1 = find(t, &[("day", DAY1), ("cdn", "cdn-a"), ("isp", "isp1")]);
    close(get(t, isp1, "plays"), Some(4.0));
    close(get(t, isp1, "first_frame_p50_ms"), Some(2000.0));
}

/// A session cut in two rows by the batch job (longer than its session horizon) whose rows overlap in
/// minutes still counts once per minute: peak concurrency takes the distinct-session path, not the
/// sweep that counts rows.
#[tokio::test]
async fn a_session_with_two_rows_counts_once_in_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    // a1 again (10:01-10:02 on cdn-a, eu/isp1): at 10:01 the sweep over rows would count a1, a1, a2.
    let second_row = session("a1", "cdn-a", "2026-03-01T10:01:00")
        .t("last_time", "2026-03-01T10:02:00")
        .s("region", "eu")
        .s("isp", "isp1");
    let dir_10 = dir.path().join("play_sessions/dt=2026-03-01/hour=10");
    write_file(&dir_10.join("part-9.parquet"), Table::PlaySessions, &[second_row]);
    let report = cdn_report(dir.path(), params(10)).await.unwrap();
    for (table, keys) in [
        (&report.daily, vec![("day", DAY1), ("cdn", "cdn-a")]),
        (
            &report.region_daily,
            vec![("day", DAY1), ("cdn", "cdn-a"), ("region", "eu")],
        ),
        (
            &report.isp_daily,
            vec![("day", DAY1), ("cdn", "cdn-a"), ("isp", "isp1")],
        ),
    ] {
        let row = find(table, &keys);
        close(get(table, row, "peak_concurrent"), Some(2.0));
    }
    let row = find(&report.daily, &[("day", DAY1), ("cdn", "cdn-a")]);
    close(get(&report.daily, row, "plays"), Some(6.0));
}

#[tokio::test]
async fn missing_tables_give_empty_results_and_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let report = cdn_report(dir.path(), params(10)).await.unwrap();
    assert_eq!(report.daily.num_rows(), 0);
    assert!(
        report.notes.iter().any(|n| n.contains("no plays")),
        "{:?}",
        report.notes
    );
    let out = dir.path().join("out");
    let written = report.write_outputs(&out).await.unwrap();
    assert_eq!(written.len(), 4);
    assert!(out.join("cdn_daily.parquet").is_file());
}

#[tokio::test]
async fn bad_input_is_quoted_in_the_error() {
    let err = parse_date("--from", "2026-13-01").unwrap_err();
    assert_eq!(
        err.to_string(),
        "--from \"2026-13-01\": not a date (expected YYYY-MM-DD)"
    );
    let err = cdn_report(Path::new("/nonexistent/warehouse"), params(10))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "--warehouse \"/nonexistent/warehouse\": not a directory"
    );
    let mut reversed = params(10);
    std::mem::swap(&mut reversed.from, &mut reversed.to);
    let dir = tempfile::tempdir().unwrap();
    let err = cdn_report(dir.path(), reversed).await.unwrap_err();
    assert!(err.to_string().starts_with("--from \"2026-03-02\""), "{err}");
}

/// Renders `html` in headless Chromium and returns the DOM after the scripts ran.
pub fn dump_dom(html: &Path) -> String {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_string());
    let profile = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {chromium:?} (set $CHROMIUM): {e}"));
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The text of `<td data-col="{column}">` in row `row` of table `table`.
pub fn cell(dom: &str, table: &str, row: usize, column: &str) -> String {
    let start = dom.find(&format!("data-table=\"{table}\"")).expect("table in DOM");
    let dom = &dom[start..];
    let row_start = dom.find(&format!("<tr data-row=\"{row}\">")).expect("row in DOM");
    let dom = &dom[row_start..];
    let needle = format!("<td data-col=\"{column}\">");
    let at = dom.find(&needle).expect("cell in DOM") + needle.len();
    let end = dom[at..].find("</td>").unwrap();
    dom[at..at + end].to_string()
}

#[tokio::test]
#[ignore = "needs Debian's chromium (scripts/test.sh installs it)"]
async fn html_report_renders_in_chromium_and_shows_the_parquet_numbers() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let out = dir.path().join("out");
    cdn_report(dir.path(), params(10))
        .await
        .unwrap()
        .write_outputs(&out)
        .await
        .unwrap();
    let html_path = out.join("report.html");
    let source = std::fs::read_to_string(&html_path).unwrap();
    for external in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "@import",
        "<link",
        "fetch(",
        "XMLHttpRequest",
        "src=\"//",
    ] {
        assert!(!source.contains(external), "report.html references {external}");
    }
    let dom = dump_dom(&html_path);
    // every chart drew one path per CDN
    let charts = dom.matches("class=\"chart\"").count();
    assert!(charts >= 10, "{charts} charts");
    assert!(
        dom.contains(&format!("<body data-rendered=\"{charts}\"")),
        "charts were not drawn"
    );
    assert_eq!(
        dom.matches("data-rendered=\"2\"").count(),
        charts,
        "each chart has 2 CDN paths"
    );
    assert_eq!(dom.matches("<path class=\"series\"").count(), 2 * charts);
    // the table shows the Parquet numbers
    let batch = common::read(&out.join("cdn_daily.parquet"));
    let table = OutputTable {
        name: "cdn_daily",
        schema: batch.schema(),
        batches: vec![batch],
    };
    assert_eq!(table.num_rows(), 4);
    for column in [
        "plays",
        "failure_pct",
        "first_frame_p90_ms",
        "stall_ratio",
        "bounce_rate",
        "peak_concurrent",
    ] {
        let values = table.f64s(column).unwrap();
        for (row, value) in values.iter().enumerate() {
            let shown = cell(&dom, "cdn_daily", row, column);
            match value {
                None => assert_eq!(shown, "", "{column} row {row}"),
                Some(v) => {
                    let shown: f64 = shown
                        .parse()
                        .unwrap_or_else(|_| panic!("{column} row {row}: {shown:?}"));
                    assert!(
                        (shown - v).abs() <= 0.0005 + 1e-12,
                        "{column} row {row}: shows {shown}, parquet has {v}"
                    );
                }
            }
        }
    }
    // the plotted values of the plays chart are the Parquet plays per CDN, in day order
    let plays = table.f64s("plays").unwrap();
    let cdns = table.strings("cdn").unwrap();
    let expected_a: Vec<String> = (0..4)
        .filter(|&r| cdns[r] == "cdn-a")
        .map(|r| plays[r].unwrap().to_string())
        .collect();
    assert!(
        dom.contains(&format!("data-name=\"cdn-a\" data-values=\"{}\"", expected_a.join(","))),
        "plays path of cdn-a"
    );
}

/// An output that cannot be written names the path and what was being done; the file system's error
/// is the source, not repeated in the message.
#[tokio::test]
async fn an_unwritable_output_is_named_with_the_io_error_as_source() {
    let dir = tempfile::tempdir().unwrap();
    let report = cdn_report(dir.path(), params(10)).await.unwrap();
    let blocked = dir.path().join("out");
    std::fs::write(&blocked, "a file, not a directory").unwrap();
    let err = report.write_outputs(&blocked).await.unwrap_err();
    assert_eq!(err.to_string(), format!("creating {blocked:?}"));
    let source = std::error::Error::source(&err).expect("the io error");
    assert!(source.is::<std::io::Error>(), "{source:?}");
}
