//! `pipeline.sql` parses, statement by statement, and says what the rest of the project expects.
//!
//! **Which parser.** Arroyo's planner parses with ArroyoSystems' fork of sqlparser-rs, branch
//! `0.55.0/arroyo` (the `[patch.crates-io]` of ArroyoSystems/arroyo's Cargo.toml, with DataFusion 51
//! on top), which adds Arroyo's DDL: `WATERMARK FOR <column> [AS <expr>]` in a column list, and
//! connection options, and whose `ArroyoDialect` takes PostgreSQL's expressions but, unlike
//! `PostgreSqlDialect`, accepts `GENERATED ALWAYS AS (..)` without `STORED`. That fork is not on
//! crates.io, so this test uses **upstream `sqlparser` 0.55.0**, the closest parser available here:
//! the whole file with `GenericDialect` (which, like Arroyo's, does not require `STORED`), and every
//! statement after the two `CREATE TABLE`s (the views and the `INSERT`, where the expressions are)
//! with `PostgreSqlDialect` too. It is not Arroyo's planner: it checks syntax only, not names, types,
//! UDF signatures or Arroyo's streaming rules (windows, joins), which only a running Arroyo checks
//! (`POST /api/v1/pipelines/validate_query`, see README).
//!
//! The one fork-only clause, `WATERMARK FOR event_ts AS <expr>`, is cut out of the `CREATE TABLE`
//! before parsing, and its expression is parsed on its own.

use std::collections::BTreeSet;
use std::path::Path;

use qoe_rollup::{EngineConfig, Hist, RollupDoc, Stats};
use sqlparser::ast::{ColumnOption, DataType, Expr, Statement};
use sqlparser::dialect::{GenericDialect, PostgreSqlDialect};
use sqlparser::parser::Parser;

fn pipeline_sql() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipeline.sql")).unwrap()
}

/// The SQL without its `WATERMARK FOR` clauses (and the comma before each), and the clauses' text.
fn split_watermarks(sql: &str) -> (String, Vec<String>) {
    let mut rest = String::new();
    let mut clauses = Vec::new();
    let mut remaining = sql;
    while let Some(at) = remaining.find("WATERMARK FOR ") {
        let before = remaining[..at].trim_end();
        let before = before
            .strip_suffix(',')
            .expect("WATERMARK FOR follows a column definition");
        rest.push_str(before);
        // The clause ends where the column list closes: the first ')' at depth 0.
        let clause = &remaining[at..];
        let mut depth = 0i32;
        let end = clause
            .char_indices()
            .find(|(_, ch)| {
                match ch {
                    '(' => depth += 1,
                    ')' if depth == 0 => return true,
                    ')' => depth -= 1,
                    _ => {}
                }
                false
            })
            .map(|(end, _)| end)
            .expect("the column list closes");
        clauses.push(clause[..end].trim().to_string());
        rest.push('\n');
        remaining = &clause[end..];
    }
    rest.push_str(remaining);
    (rest, clauses)
}

fn statements() -> Vec<Statement> {
    let (sql, _) = split_watermarks(&pipeline_sql());
    Parser::parse_sql(&GenericDialect {}, &sql).unwrap_or_else(|error| panic!("pipeline.sql: {error}"))
}

fn with_option(options: &[sqlparser::ast::SqlOption], name: &str) -> Option<String> {
    options.iter().find_map(|option| match option {
        sqlparser::ast::SqlOption::KeyValue { key, value } if key.value == name => {
            Some(value.to_string().trim_matches('\'').to_string())
        }
        _ => None,
    })
}

#[test]
fn every_statement_parses() {
    let kinds: Vec<&str> = statements()
        .iter()
        .map(|statement| match statement {
            Statement::CreateTable(_) => "create table",
            Statement::CreateView { .. } => "create view",
            Statement::Insert(_) => "insert",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "create table",
            "create table",
            "create view",
            "create view",
            "create view",
            "create view",
            "insert"
        ]
    );
}

#[test]
fn views_and_insert_parse_as_postgresql_too() {
    let sql = pipeline_sql();
    let queries = &sql[sql.find("CREATE VIEW").unwrap()..];
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, queries)
        .unwrap_or_else(|error| panic!("pipeline.sql after the tables: {error}"));
    assert_eq!(statements.len(), 5);
    let generic = Parser::parse_sql(&GenericDialect {}, queries).unwrap();
    assert_eq!(statements, generic, "both dialects read the queries alike");
}

#[test]
fn the_watermark_clause_parses_and_names_a_generated_timestamp() {
    let (_, clauses) = split_watermarks(&pipeline_sql());
    assert_eq!(clauses.len(), 1);
    let clause = clauses[0].strip_prefix("WATERMARK FOR ").unwrap();
    let (column, expression) = clause.split_once(" AS ").expect("WATERMARK FOR <column> AS <expr>");
    assert_eq!(column, "event_ts");
    let expression = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(expression)
        .unwrap()
        .parse_expr()
        .unwrap();
    // event_ts - INTERVAL '5' SECOND: the engine's default allowed lateness.
    let Expr::BinaryOp { left, right, .. } = &expression else {
        panic!("the watermark is event_ts minus an interval, got {expression}");
    };
    assert_eq!(left.to_string(), "event_ts");
    let default_lateness_secs = EngineConfig::default().allowed_lateness_ms / 1_000;
    assert_eq!(right.to_string(), format!("INTERVAL '{default_lateness_secs}' SECOND"));

    let Statement::CreateTable(beacons) = &statements()[0] else {
        panic!("the first statement creates the source")
    };
    let event_ts = beacons
        .columns
        .iter()
        .find(|column| column.name.value == "event_ts")
        .unwrap();
    assert_eq!(
        event_ts.data_type,
        DataType::Timestamp(None, sqlparser::ast::TimezoneInfo::None)
    );
    assert!(event_ts
        .options
        .iter()
        .any(|option| matches!(option.option, ColumnOption::Generated { .. })));
}

#[test]
fn tables_are_the_kafka_topics_of_the_contract() {
    let statements = statements();
    let tables: Vec<_> = statements
        .iter()
        .filter_map(|statement| match statement {
            Statement::CreateTable(table) => Some(table),
            _ => None,
        })
        .collect();
    let source = tables[0];
    assert_eq!(source.name.to_string(), "beacons");
    let options = &source.with_options;
    assert_eq!(with_option(options, "connector").as_deref(), Some("kafka"));
    assert_eq!(with_option(options, "type").as_deref(), Some("source"));
    assert_eq!(with_option(options, "format").as_deref(), Some("json"));
    assert_eq!(with_option(options, "topic").as_deref(), Some("qoe.beacons.v1"));

    let sink = tables[1];
    assert_eq!(sink.name.to_string(), "rollups");
    let options = &sink.with_options;
    assert_eq!(with_option(options, "connector").as_deref(), Some("kafka"));
    assert_eq!(with_option(options, "type").as_deref(), Some("sink"));
    assert_eq!(with_option(options, "format").as_deref(), Some("raw_string"));
    assert_eq!(
        with_option(options, "topic").as_deref(),
        Some(qoe_rollup::ROLLUPS_TOPIC)
    );
    // raw_string writes the TEXT column named `value` as the message (arroyo-formats ser.rs).
    let columns: Vec<String> = sink.columns.iter().map(|column| column.name.value.clone()).collect();
    assert_eq!(columns, ["value", "message_key"]);
}

#[test]
fn windows_are_one_minute_tumbles() {
    let sql = pipeline_sql();
    assert_eq!(
        sql.matches("TUMBLE(").count(),
        1,
        "one window, passed through to the later aggregates"
    );
    assert!(sql.contains("TUMBLE(INTERVAL '1' MINUTE) AS window"));
    assert!(sql.contains(r#"',"window_s":60,"#));
    assert_eq!(EngineConfig::default().window_ms, 60_000);
}

#[test]
fn the_room_threshold_is_the_engines_default() {
    assert!(pipeline_sql().contains("WHERE m.grain <> 'room' OR v.viewers >= 20;"));
    assert_eq!(EngineConfig::default().room_min_viewers, 20);
}

#[test]
fn calls_exactly_the_udfs_of_this_workspace() {
    let sql = pipeline_sql();
    let mut called = BTreeSet::new();
    for (at, _) in sql.match_indices("qoe_") {
        let name: String = sql[at..]
            .chars()
            .take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_')
            .collect();
        if sql[at + name.len()..].starts_with('(') {
            called.insert(name);
        }
    }
    let crates: BTreeSet<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../udfs"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(called, crates);
}

/// Every field name of a document with every optional field present.
fn document_fields() -> BTreeSet<String> {
    let stats = Some(Stats {
        avg: 1.0,
        sum: 1.0,
        count: 1,
        p50: Some(1.0),
        p90: Some(1.0),
        p99: Some(1.0),
    });
    let hist = Some(Hist {
        values: vec![1.0],
        counts: vec![1],
    });
    let some = Some(String::new());
    let full = RollupDoc {
        cdn: some.clone(),
        region: some.clone(),
        isp: some.clone(),
        platform: some.clone(),
        edge_ip: some.clone(),
        room_id: some,
        first_frame_ms: stats,
        dns_ms: stats,
        connect_ms: stats,
        first_packet_ms: stats,
        httpdns_share: Some(1.0),
        stall_ratio: Some(1.0),
        stalls_per_hour: Some(1.0),
        startup_skip_ms: stats,
        latency_ms: stats,
        rtt_ms: stats,
        bitrate_kbps: stats,
        buffer_ms: stats,
        encode_fps: stats,
        output_kbps: stats,
        target_kbps: stats,
        cpu_pct: stats,
        first_frame_ms_hist: hist.clone(),
        dns_ms_hist: hist.clone(),
        connect_ms_hist: hist.clone(),
        first_packet_ms_hist: hist.clone(),
        startup_skip_ms_hist: hist.clone(),
        latency_ms_hist: hist.clone(),
        rtt_ms_hist: hist,
        ..RollupDoc::default()
    };
    let serde_json::Value::Object(fields) = serde_json::to_value(full).unwrap() else {
        unreachable!()
    };
    fields.keys().cloned().collect()
}

#[test]
fn the_document_the_insert_builds_has_every_field_of_rollup_doc_v1() {
    let sql = pipeline_sql();
    let insert = &sql[sql.find("INSERT INTO rollups").unwrap()..];
    let mut written = BTreeSet::new();
    for (at, _) in insert.match_indices("\":") {
        let name_start = insert[..at].rfind('"').unwrap() + 1;
        written.insert(insert[name_start..at].to_string());
    }
    assert_eq!(written, document_fields());
}
