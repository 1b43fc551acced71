//! Every DuckDB query of `docs/analysts.md`, run with the real DuckDB command line on a warehouse built
//! from simulator data, gives the same answers as `qoe report` on the same warehouse (counts exactly,
//! floats within 1e-9 relative), and covers only metrics it is compared on.

mod sim;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use chrono::{Datelike, NaiveDate};
use qoe_report::{ab_report, cdn_report, rooms_report, AbParams, CdnParams, OutputTable, RoomsParams, SpikeRule};
use serde_json::{Map, Value};

type Row = Map<String, Value>;

/// The DuckDB CLI: `$DUCKDB`, else the copy `scripts/lib.sh` installs into the cache.
fn duckdb() -> PathBuf {
    if let Some(path) = std::env::var_os("DUCKDB").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "DUCKDB={} does not exist", path.display());
        return path;
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let cached = home.join(".cache/qoe/duckdb-cli-1.5.6/bin/duckdb");
    assert!(
        cached.is_file(),
        "no DuckDB CLI: set DUCKDB to the duckdb binary, or run scripts/test.sh (its ensure_duckdb installs \
         duckdb-cli into {})",
        cached.display()
    );
    cached
}

/// The queries of docs/analysts.md: (name, sql) for each ```sql block preceded by `<!-- query: NAME -->`.
fn queries() -> Vec<(String, String)> {
    // At run time, not `env!`: a test binary reused from a checkout at another path (one target
    // directory shared by several clones) would look in that checkout.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    let path = Path::new(&manifest_dir).join("../../docs/analysts.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let lines: Vec<&str> = doc.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "```sql" {
            let marker = i
                .checked_sub(1)
                .and_then(|p| lines[p].trim().strip_prefix("<!-- query: "))
                .and_then(|rest| rest.strip_suffix(" -->"))
                .unwrap_or_else(|| {
                    panic!(
                        "docs/analysts.md line {}: sql block without a <!-- query: NAME --> marker",
                        i + 1
                    )
                });
            let end = (i + 1..lines.len())
                .find(|&j| lines[j].trim() == "```")
                .unwrap_or_else(|| panic!("docs/analysts.md line {}: unclosed sql block", i + 1));
            found.push((marker.to_string(), lines[i + 1..end].join("\n")));
            i = end;
        } else {
            assert!(
                !lines[i].contains("<!-- query:") || lines.get(i + 1).map(|l| l.trim()) == Some("```sql"),
                "docs/analysts.md line {}: a query marker must be followed by a ```sql block",
                i + 1
            );
        }
        i += 1;
    }
    let names: BTreeSet<&String> = found.iter().map(|(name, _)| name).collect();
    assert_eq!(names.len(), found.len(), "duplicate query names");
    found
}

/// Runs a query with its placeholders replaced; the rows of the last statement.
fn run(duckdb: &Path, sql: &str, warehouse: &Path, from: NaiveDate, to: NaiveDate) -> Vec<Row> {
    let sql = sql
        .replace("{{warehouse}}", &warehouse.display().to_string())
        .replace("{{from}}", &from.to_string())
        .replace("{{to}}", &to.to_string());
    assert!(!sql.contains("{{"), "unknown placeholder in\n{sql}");
    let out = Command::new(duckdb)
        .arg("-json")
        .arg("-c")
        .arg(&sql)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", duckdb.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "duckdb failed: {}\n{stdout}\n{sql}",
        String::from_utf8_lossy(&out.stderr)
    );
    if stdout.trim().is_empty() {
        return Vec::new();
    }
    let value: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("duckdb json: {e}\n{stdout}"));
    value
        .as_array()
        .expect("an array of rows")
        .iter()
        .map(|row| row.as_object().expect("a row object").clone())
        .collect()
}

fn num(row: &Row, column: &str) -> Option<f64> {
    match row
        .get(column)
        .unwrap_or_else(|| panic!("no column {column} in {row:?}"))
    {
        Value::Null => None,
        Value::Number(n) => n.as_f64(),
        // DuckDB prints DECIMALs as strings
        Value::String(s) => Some(s.parse().unwrap_or_else(|_| panic!("{column}: {s:?} is not a number"))),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        other => panic!("{column}: {other:?}"),
    }
}

fn text(row: &Row, column: &str) -> String {
    match row
        .get(column)
        .unwrap_or_else(|| panic!("no column {column} in {row:?}"))
    {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Float equality within 1e-9 relative (and 1e-12 absolute, for values computed as differences near 0).
#[track_caller]
fn same(what: &str, got: Option<f64>, want: Option<f64>) {
    match (got, want) {
        (Some(a), Some(e)) => assert!(
            (a - e).abs() <= 1e-9 * a.abs().max(e.abs()) + 1e-12,
            "{what}: duckdb {a}, report {e}"
        ),
        (a, e) => assert_eq!(a, e, "{what}: duckdb vs report"),
    }
}

/// Count equality (exact).
#[track_caller]
fn count(what: &str, got: Option<f64>, want: Option<f64>) {
    let (got, want) = (got.unwrap_or(0.0), want.unwrap_or(0.0));
    assert!(
        got.fract() == 0.0 && want.fract() == 0.0 && got == want,
        "{what}: duckdb {got}, report {want}"
    );
}

/// Asserts that every column of every row was compared (or is a key).
#[track_caller]
fn covered(name: &str, rows: &[Row], compared: &[&str]) {
    for row in rows {
        for column in row.keys() {
            assert!(
                compared.contains(&column.as_str()),
                "query {name}: column {column} is not compared with the report"
            );
        }
    }
}

/// A report table indexed by key columns: key → row index.
struct Indexed<'a> {
    table: &'a OutputTable,
    rows: BTreeMap<Vec<String>, usize>,
}

impl<'a> Indexed<'a> {
    fn new(table: &'a OutputTable, keys: &[&str]) -> Self {
        let columns: Vec<Vec<String>> = keys.iter().map(|k| table.strings(k).unwrap()).collect();
        let rows = (0..table.num_rows())
            .map(|r| (columns.iter().map(|c| c[r].clone()).collect(), r))
            .collect();
        Indexed { table, rows }
    }
    fn get(&self, key: &[String], column: &str) -> Option<f64> {
        let r = *self
            .rows
            .get(key)
            .unwrap_or_else(|| panic!("report has no row {key:?}"));
        self.table.f64s(column).unwrap()[r]
    }
    fn has(&self, key: &[String]) -> bool {
        self.rows.contains_key(key)
    }
    /// Keys of the rows where `column` is positive.
    fn keys_where_positive(&self, column: &str) -> BTreeSet<Vec<String>> {
        let values = self.table.f64s(column).unwrap();
        self.rows
            .iter()
            .filter(|(_, &r)| values[r].unwrap_or(0.0) > 0.0)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Per (day, key...) sums that a period's ratio is made of, recovered from the report's daily rows.
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    plays: f64,
    failures: f64,
    exits: f64,
    first_frames: f64,
    watch_ms: f64,
    stall_ms: f64,
    stall_count: f64,
}

impl Sums {
    fn add_day(&mut self, t: &Indexed<'_>, key: &[String]) {
        let plays = t.get(key, "plays").unwrap_or(0.0);
        let watch_ms = t.get(key, "watch_hours").unwrap_or(0.0) * 3_600_000.0;
        self.plays += plays;
        self.failures += (t.get(key, "failure_pct").unwrap_or(0.0) * plays / 100.0).round();
        self.exits += (t.get(key, "ebvs_pct").unwrap_or(0.0) * plays / 100.0).round();
        self.first_frames += t.get(key, "first_frames").unwrap_or(0.0);
        self.watch_ms += watch_ms;
        // stall_ratio r = S / (W + S) → S = r·W / (1 − r); stalls_per_hour = C·3.6e6 / W
        if let Some(r) = t.get(key, "stall_ratio") {
            self.stall_ms += r * watch_ms / (1.0 - r);
        }
        if let Some(per_hour) = t.get(key, "stalls_per_hour") {
            self.stall_count += (per_hour * watch_ms / 3_600_000.0).round();
        }
    }
    fn pct(&self, x: f64) -> Option<f64> {
        (self.plays > 0.0).then(|| 100.0 * x / self.plays)
    }
    fn stall_ratio(&self) -> Option<f64> {
        let total = self.watch_ms + self.stall_ms;
        (total > 0.0).then(|| self.stall_ms / total)
    }
    fn stalls_per_hour(&self) -> Option<f64> {
        (self.watch_ms > 0.0).then(|| self.stall_count * 3_600_000.0 / self.watch_ms)
    }
}

#[tokio::test]
#[ignore = "needs the DuckDB CLI (scripts/test.sh installs it)"]
async fn every_analyst_query_equals_the_reports() {
    let duckdb = duckdb();
    let queries = queries();
    let started = Instant::now();
    let sim = sim::build(sim::config());
    let wh = sim.warehouse.as_path();
    let (from, to) = (sim.days[0], *sim.days.last().unwrap());
    assert!(
        sim.days.len() >= 2,
        "the simulation must cross midnight: {:?}",
        sim.days
    );
    // Sessions that end right at a heartbeat send a play_end covering 0 ms: the queries below must
    // count them (their end reason, first_frame_seen) like any other end.
    assert!(
        sim.truth.zero_interval_ends.get("play_end").copied().unwrap_or(0) > 0,
        "no zero-interval play_end in the simulation: {:?}",
        sim.truth.zero_interval_ends
    );

    let cdn = cdn_report(
        wh,
        CdnParams {
            from,
            to,
            bounce_secs: 10,
        },
    )
    .await
    .unwrap();
    let daily = Indexed::new(&cdn.daily, &["day", "cdn"]);
    let region_daily = Indexed::new(&cdn.region_daily, &["day", "cdn", "region"]);
    let ab = ab_report(
        wh,
        AbParams {
            experiment: "abr_v2".into(),
            from,
            to,
            control: None,
        },
    )
    .await
    .unwrap();
    let rooms: Vec<String> = (1..=sim.config.rooms).map(|i| format!("room-{i:04}")).collect();
    let rooms_rep = rooms_report(
        wh,
        RoomsParams {
            rooms,
            from,
            to,
            spike: SpikeRule::default(),
        },
    )
    .await
    .unwrap();
    eprintln!("reports computed at {:.1?}", started.elapsed());

    let mut checked = BTreeSet::new();
    for (name, sql) in &queries {
        let q = |from: NaiveDate, to: NaiveDate| run(&duckdb, sql, wh, from, to);
        match name.as_str() {
            "views" => {
                let rows = q(from, to);
                covered(name, &rows, &["table_name", "row_count"]);
                let counts: BTreeMap<String, Option<f64>> = rows
                    .iter()
                    .map(|r| (text(r, "table_name"), num(r, "row_count")))
                    .collect();
                let t = &sim.truth;
                count("play rows", counts["play"], Some(t.play_beacons as f64));
                count("push rows", counts["push"], Some(t.push_beacons as f64));
                count("room rows", counts["room"], Some(t.room_beacons as f64));
                count(
                    "play_sessions rows",
                    counts["play_sessions"],
                    Some(t.play_sessions as f64),
                );
                let plays: f64 = cdn.daily.f64s("plays").unwrap().iter().map(|p| p.unwrap_or(0.0)).sum();
                count(
                    "play_sessions rows vs report plays",
                    counts["play_sessions"],
                    Some(plays),
                );
            }
            "best_cdn_by_region" => {
                let compared = [
                    "rank_in_region",
                    "region",
                    "cdn",
                    "plays",
                    "failure_pct",
                    "ebvs_pct",
                    "first_frames",
                    "first_frame_p50_ms",
                    "first_frame_p90_ms",
                    "stall_ratio",
                ];
                // one day: every column equals cdn_region_daily
                for &day in &sim.days {
                    let rows = q(day, day);
                    covered(name, &rows, &compared);
                    let mut seen = BTreeSet::new();
                    for row in &rows {
                        let key = vec![day.to_string(), text(row, "cdn"), text(row, "region")];
                        let what = |c: &str| format!("{name} {key:?} {c}");
                        for c in ["plays", "first_frames"] {
                            count(&what(c), num(row, c), region_daily.get(&key, c));
                        }
                        for c in [
                            "failure_pct",
                            "ebvs_pct",
                            "first_frame_p50_ms",
                            "first_frame_p90_ms",
                            "stall_ratio",
                        ] {
                            same(&what(c), num(row, c), region_daily.get(&key, c));
                        }
                        seen.insert(key);
                    }
                    let expected: BTreeSet<Vec<String>> = region_daily
                        .keys_where_positive("plays")
                        .into_iter()
                        .filter(|k| k[0] == day.to_string())
                        .collect();
                    assert_eq!(seen, expected, "{name}: (day, cdn, region) rows");
                    check_ranks(&rows);
                }
                // the whole period: the same formulas over the sums of the days
                let rows = q(from, to);
                assert!(!rows.is_empty());
                for row in &rows {
                    let (c, region) = (text(row, "cdn"), text(row, "region"));
                    let mut sums = Sums::default();
                    for day in &sim.days {
                        let key = vec![day.to_string(), c.clone(), region.clone()];
                        if region_daily.has(&key) {
                            sums.add_day(&region_daily, &key);
                        }
                    }
                    let what = |m: &str| format!("{name} {from}..{to} {c} {region} {m}");
                    count(&what("plays"), num(row, "plays"), Some(sums.plays));
                    count(&what("first_frames"), num(row, "first_frames"), Some(sums.first_frames));
                    same(&what("failure_pct"), num(row, "failure_pct"), sums.pct(sums.failures));
                    same(&what("ebvs_pct"), num(row, "ebvs_pct"), sums.pct(sums.exits));
                    same(&what("stall_ratio"), num(row, "stall_ratio"), sums.stall_ratio());
                }
                check_ranks(&rows);
            }
            "stall_ratio_by_cdn_day" => {
                let rows = q(from, to);
                covered(
                    name,
                    &rows,
                    &["day", "cdn", "plays", "watch_hours", "stall_ratio", "stalls_per_hour"],
                );
                let mut seen = BTreeSet::new();
                for row in &rows {
                    let key = vec![text(row, "day"), text(row, "cdn")];
                    count(
                        &format!("{name} {key:?} plays"),
                        num(row, "plays"),
                        daily.get(&key, "plays"),
                    );
                    for c in ["watch_hours", "stall_ratio", "stalls_per_hour"] {
                        same(&format!("{name} {key:?} {c}"), num(row, c), daily.get(&key, c));
                    }
                    seen.insert(key);
                }
                assert_eq!(seen, daily.keys_where_positive("plays"), "{name}: (day, cdn) rows");
            }
            "stall_ratio_by_cdn_month" => {
                let rows = q(from, to);
                covered(
                    name,
                    &rows,
                    &["month", "cdn", "plays", "watch_hours", "stall_ratio", "stalls_per_hour"],
                );
                assert!(!rows.is_empty());
                let mut plays_total = 0.0;
                for row in &rows {
                    let (month, c) = (text(row, "month"), text(row, "cdn"));
                    let mut sums = Sums::default();
                    for day in sim.days.iter().filter(|d| d.with_day(1).unwrap().to_string() == month) {
                        let key = vec![day.to_string(), c.clone()];
                        if daily.has(&key) {
                            sums.add_day(&daily, &key);
                        }
                    }
                    let what = |m: &str| format!("{name} {month} {c} {m}");
                    count(&what("plays"), num(row, "plays"), Some(sums.plays));
                    same(
                        &what("watch_hours"),
                        num(row, "watch_hours"),
                        Some(sums.watch_ms / 3_600_000.0),
                    );
                    same(&what("stall_ratio"), num(row, "stall_ratio"), sums.stall_ratio());
                    same(
                        &what("stalls_per_hour"),
                        num(row, "stalls_per_hour"),
                        sums.stalls_per_hour(),
                    );
                    plays_total += sums.plays;
                }
                count(
                    "plays in all months",
                    Some(plays_total),
                    Some(sim.truth.play_sessions as f64),
                );
            }
            "first_frame_by_cdn_resolver" => {
                const PCT: [&str; 8] = [
                    "first_frame_p50_ms",
                    "first_frame_p90_ms",
                    "dns_p50_ms",
                    "dns_p90_ms",
                    "connect_p50_ms",
                    "connect_p90_ms",
                    "first_packet_p50_ms",
                    "first_packet_p90_ms",
                ];
                let rows = q(from, to);
                let mut compared = vec!["day", "cdn", "resolver", "first_frames"];
                compared.extend(PCT);
                covered(name, &rows, &compared);
                let mut seen = BTreeSet::new();
                let mut per_resolver: BTreeMap<Vec<String>, f64> = BTreeMap::new();
                let mut dns_p50: BTreeMap<(Vec<String>, String), f64> = BTreeMap::new();
                for row in &rows {
                    let key = vec![text(row, "day"), text(row, "cdn")];
                    let resolver = text(row, "resolver");
                    if resolver == "all" {
                        count(
                            &format!("{name} {key:?} first_frames"),
                            num(row, "first_frames"),
                            daily.get(&key, "first_frames"),
                        );
                        for c in PCT {
                            same(&format!("{name} {key:?} {c}"), num(row, c), daily.get(&key, c));
                        }
                        seen.insert(key);
                    } else {
                        *per_resolver.entry(key.clone()).or_default() += num(row, "first_frames").unwrap();
                        if let Some(p50) = num(row, "dns_p50_ms") {
                            dns_p50.insert((key, resolver), p50);
                        }
                    }
                }
                assert_eq!(
                    seen,
                    daily.keys_where_positive("first_frames"),
                    "{name}: (day, cdn) rows"
                );
                for (key, n) in &per_resolver {
                    count(
                        &format!("{name} {key:?} Σ resolvers"),
                        Some(*n),
                        daily.get(key, "first_frames"),
                    );
                }
                // the simulator's model: httpDNS resolves faster than the local DNS
                let mut compared_pairs = 0;
                for ((key, resolver), http) in &dns_p50 {
                    if resolver == "httpdns" {
                        if let Some(local) = dns_p50.get(&(key.clone(), "localdns".to_string())) {
                            assert!(http < local, "{key:?}: httpdns dns p50 {http} >= localdns {local}");
                            compared_pairs += 1;
                        }
                    }
                }
                assert!(compared_pairs > 0, "no (day, cdn) with both resolvers");
            }
            "ab_abr_v2" => {
                let rows = q(from, to);
                check_ab(name, &rows, &ab.metrics);
            }
            "technical_exits" => {
                let rows = q(from, to);
                let compared = [
                    "room_id",
                    "minute",
                    "joins",
                    "leaves",
                    "serving_cdns",
                    "spiking_cdns",
                    "localisation",
                ];
                covered(name, &rows, &compared);
                let e = &rooms_rep.episodes;
                let report_rows: Vec<Vec<String>> = (0..e.num_rows())
                    .map(|r| {
                        compared
                            .iter()
                            // the report's timestamps print as 2025-11-23T00:27:00, DuckDB's with a space
                            .map(|c| e.strings(c).unwrap()[r].replacen('T', " ", usize::from(*c == "minute")))
                            .collect()
                    })
                    .collect();
                let duck_rows: Vec<Vec<String>> = rows
                    .iter()
                    .map(|row| compared.iter().map(|c| text(row, c)).collect())
                    .collect();
                assert_eq!(duck_rows, report_rows, "{name}: episodes");
                assert!(!duck_rows.is_empty(), "the simulated publisher jitter gives an episode");
            }
            "peak_concurrent" => {
                let rows = q(from, to);
                covered(name, &rows, &["day", "cdn", "peak_concurrent"]);
                let mut seen = BTreeSet::new();
                for row in &rows {
                    let key = vec![text(row, "day"), text(row, "cdn")];
                    count(
                        &format!("{name} {key:?}"),
                        num(row, "peak_concurrent"),
                        daily.get(&key, "peak_concurrent"),
                    );
                    seen.insert(key);
                }
                assert_eq!(seen, daily.keys_where_positive("peak_concurrent"), "{name}: rows");
            }
            "bounce_rate" => {
                let rows = q(from, to);
                covered(
                    name,
                    &rows,
                    &["day", "cdn", "joins", "leaves", "bounces", "bounce_rate"],
                );
                let mut seen = BTreeSet::new();
                for row in &rows {
                    let key = vec![text(row, "day"), text(row, "cdn")];
                    let what = |c: &str| format!("{name} {key:?} {c}");
                    count(&what("joins"), num(row, "joins"), daily.get(&key, "joins"));
                    count(&what("leaves"), num(row, "leaves"), daily.get(&key, "leaves"));
                    same(
                        &what("bounce_rate"),
                        num(row, "bounce_rate"),
                        daily.get(&key, "bounce_rate"),
                    );
                    let bounces = daily
                        .get(&key, "bounce_rate")
                        .map(|r| (r * daily.get(&key, "joins").unwrap()).round());
                    count(&what("bounces"), num(row, "bounces"), bounces);
                    seen.insert(key);
                }
                let mut expected = daily.keys_where_positive("joins");
                expected.extend(daily.keys_where_positive("leaves"));
                assert_eq!(seen, expected, "{name}: rows");
                let bounced: f64 = rows.iter().filter_map(|r| num(r, "bounces")).sum();
                assert!(bounced > 0.0, "no bounce at all: the comparison would be vacuous");
            }
            "sessions_crossing_midnight" => {
                let rows = q(from, to);
                covered(
                    name,
                    &rows,
                    &[
                        "start_day",
                        "cdn",
                        "sessions",
                        "crossing_midnight",
                        "crossing_watch_hours",
                    ],
                );
                let mut sessions: BTreeMap<NaiveDate, usize> = BTreeMap::new();
                let mut crossing: BTreeMap<NaiveDate, usize> = BTreeMap::new();
                for row in &rows {
                    let key = vec![text(row, "start_day"), text(row, "cdn")];
                    count(
                        &format!("{name} {key:?} sessions"),
                        num(row, "sessions"),
                        daily.get(&key, "plays"),
                    );
                    let day: NaiveDate = key[0].parse().unwrap();
                    let n = num(row, "crossing_midnight").unwrap();
                    *sessions.entry(day).or_default() += num(row, "sessions").unwrap() as usize;
                    *crossing.entry(day).or_default() += n as usize;
                    // watched hours of the crossing sessions: part of the day's watch hours, positive iff any
                    let hours = num(row, "crossing_watch_hours").unwrap();
                    assert!(hours <= daily.get(&key, "watch_hours").unwrap() + 1e-9, "{key:?}");
                    assert_eq!(hours > 0.0, n > 0.0, "{key:?}: {hours} h for {n} sessions");
                }
                // counted from the beacons themselves
                assert_eq!(
                    sessions, sim.truth.sessions_by_start_day,
                    "{name}: sessions per start day"
                );
                assert_eq!(
                    crossing, sim.truth.crossing_by_start_day,
                    "{name}: crossing per start day"
                );
                assert!(crossing[&from] > 0, "the simulation has sessions crossing midnight");
            }
            other => panic!("docs/analysts.md query {other:?} has no check in tests/analysts.rs"),
        }
        checked.insert(name.clone());
    }
    let expected: BTreeSet<String> = [
        "views",
        "best_cdn_by_region",
        "stall_ratio_by_cdn_day",
        "stall_ratio_by_cdn_month",
        "first_frame_by_cdn_resolver",
        "ab_abr_v2",
        "technical_exits",
        "peak_concurrent",
        "bounce_rate",
        "sessions_crossing_midnight",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(checked, expected, "queries in docs/analysts.md vs checks");
    eprintln!("{} queries checked in {:.1?}", checked.len(), started.elapsed());
}

/// `rank_in_region` 1 has the lowest stall ratio of its region, and ranks follow the stall ratio.
fn check_ranks(rows: &[Row]) {
    let mut by_region: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for row in rows {
        by_region.entry(text(row, "region")).or_default().push((
            num(row, "rank_in_region").unwrap(),
            num(row, "stall_ratio").unwrap_or(f64::INFINITY),
        ));
    }
    for (region, mut ranks) in by_region {
        ranks.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(ranks[0].0, 1.0, "{region}");
        assert!(ranks.windows(2).all(|w| w[0].1 <= w[1].1), "{region}: {ranks:?}");
    }
}

/// The wide A/B row of each arm against the report's (metric, arm) rows: `{metric}`, `{metric}_ci_low`,
/// `{metric}_ci_high`, `{metric}_diff`, `{metric}_diff_ci_low`, `{metric}_diff_ci_high`.
fn check_ab(name: &str, rows: &[Row], metrics: &OutputTable) {
    let (m, a) = (metrics.strings("metric").unwrap(), metrics.strings("arm").unwrap());
    let report_arms: BTreeSet<String> = a.iter().cloned().collect();
    let duck_arms: BTreeSet<String> = rows.iter().map(|r| text(r, "arm")).collect();
    assert_eq!(duck_arms, report_arms, "{name}: arms");
    assert_eq!(report_arms.len(), 2, "abr_v2 has two arms");
    let is_control = metrics.f64s("is_control").unwrap();
    let n = metrics.f64s("n").unwrap();
    let mut compared: Vec<String> = ["arm", "is_control", "n", "ff_n"].map(String::from).to_vec();
    for row in rows {
        let arm = text(row, "arm");
        let at = |metric: &str| {
            (0..m.len())
                .find(|&r| m[r] == metric && a[r] == arm)
                .unwrap_or_else(|| panic!("report has no {metric} for {arm}"))
        };
        count(&format!("{name} {arm} n"), num(row, "n"), n[at("failure_pct")]);
        count(
            &format!("{name} {arm} ff_n"),
            num(row, "ff_n"),
            n[at("first_frame_mean_ms")],
        );
        count(
            &format!("{name} {arm} is_control"),
            num(row, "is_control"),
            is_control[at("failure_pct")],
        );
        for metric in [
            "failure_pct",
            "ebvs_pct",
            "first_frame_mean_ms",
            "first_frame_p50_ms",
            "stall_ratio",
            "stalls_per_hour",
            "avg_watch_s",
        ] {
            let r = at(metric);
            for (suffix, column) in [
                ("", "value"),
                ("_ci_low", "ci_low"),
                ("_ci_high", "ci_high"),
                ("_diff", "diff"),
                ("_diff_ci_low", "diff_ci_low"),
                ("_diff_ci_high", "diff_ci_high"),
            ] {
                let duck_column = format!("{metric}{suffix}");
                if !row.contains_key(&duck_column) {
                    // only the median's intervals are left out (documented)
                    assert!(
                        metric == "first_frame_p50_ms" && suffix.contains("ci"),
                        "{name}: column {duck_column} missing"
                    );
                    continue;
                }
                same(
                    &format!("{name} {arm} {duck_column}"),
                    num(row, &duck_column),
                    metrics.f64s(column).unwrap()[r],
                );
                compared.push(duck_column);
            }
        }
    }
    let compared: Vec<&str> = compared.iter().map(String::as_str).collect();
    covered(name, rows, &compared);
    // the comparison is not vacuous: the treatment's stall-ratio difference has an interval
    let diffs = metrics.f64s("diff_ci_high").unwrap();
    assert!(diffs.iter().any(Option::is_some));
}
