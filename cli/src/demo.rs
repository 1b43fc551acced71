//! `qoe demo`: the whole pipeline in one process, over a few simulated hours that include both
//! scripted incidents.
//!
//! What runs, all on this machine:
//! - an in-process Kafka-protocol broker: librdkafka's mock cluster. It speaks the real protocol over
//!   loopback sockets but keeps records in memory only, loses them on exit, and keeps at most about
//!   5 MB or 100,000 records per partition (older ones are dropped). The demo gives the beacon topic
//!   many partitions, runs the jobs while the beacons arrive, and checks at the end that each job read
//!   every record the topic received;
//! - the collector, on a free loopback port;
//! - the stream job (`qoe stream --input kafka`): minute rollups to NDJSON (and Elasticsearch with
//!   `--es-url`), and the default alert rules, whose events go to NDJSON (and Elasticsearch);
//! - the batch job (`qoe batch --input kafka`) writing a local Parquet warehouse;
//! - the simulator posting a few hours of traffic that ended now, so every window closes at once.
//!
//! Then it runs the CDN report and the rooms report over the warehouse, and prints where everything
//! is. It fails (after printing everything) when the alerts are not exactly the scripted incidents,
//! each localised, or when a job did not read every record: a demo that quietly shows wrong answers
//! would be worse than none.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use qoe_alert::RuleSet;
use qoe_collector::config::{KafkaConfig, RateLimitConfig};
use qoe_collector::CollectorConfig;
use qoe_runtime::kafka::{watermarks, ClientSpec, KafkaOptions, TopicInput};
use qoe_runtime::metrics;
use qoe_simulator::{Pause, SimConfig, Target};
use qoe_stream::{AlertOutput, AlertSink, EsOutput, NdjsonOutput, Output};
use rdkafka::consumer::BaseConsumer;
use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;

use crate::es_args::EsArgs;

mod incidents;

use incidents::{clock, day, describe_incident, print_alerts, read_alerts};

/// Run the whole pipeline on an embedded broker over simulated hours with two incidents.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DemoArgs {
    /// Directory for everything the demo writes (rollups, alerts, warehouse, reports). In a directory
    /// an earlier demo wrote, its outputs are replaced (other files are left alone); any other
    /// non-empty directory is refused.
    #[arg(long, default_value = "qoe-demo")]
    out: PathBuf,
    /// Simulated hours of traffic, ending now, 2 to 48 (the incidents fall at about a third and
    /// two thirds of the span; the demo's checks are made with the default 3).
    #[arg(long, default_value_t = 3)]
    hours: u64,
    /// Simulator seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Rooms (live streams) in the simulation.
    #[arg(long, default_value_t = 8)]
    rooms: usize,
    /// Average concurrent viewers in the simulation.
    #[arg(long, default_value_t = 300)]
    viewers: usize,
    /// Address for the collector (port 0: a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Also write the rollups and the alert events to this Elasticsearch (the --es-* flags apply).
    #[arg(long)]
    es_url: Option<String>,
    #[command(flatten)]
    es: EsArgs,
}

const WRITE_KEY: &str = "demo:demo-secret";
/// Partitions of the beacon topic. The collector keys records by room, so at most as many partitions
/// as rooms carry records; more partitions make it likelier that rooms do not share one. A busy
/// room's partition still passes the mock cluster's 5 MB within seconds (see [`PAUSE_LAG`]).
const BEACON_PARTITIONS: i32 = 32;
const DLQ_PARTITIONS: i32 = 2;
/// A job stops (closing every window, flushing the warehouse) after this long without records.
const IDLE_EXIT: Duration = Duration::from_secs(5);
/// The stream job's allowed lateness. The simulator replays hours in seconds over several HTTP
/// requests in flight, so a partition's beacons arrive up to a few hundred apart from event-time
/// order, tens of seconds of simulated time; live SDK traffic needs only the default 5 s.
const DEMO_LATENESS_MS: i64 = 120_000;
/// How long the batch job may take to join its consumer group.
const GROUP_JOIN_WAIT: Duration = Duration::from_secs(60);
/// How often the demo looks at the jobs' progress.
const PACE_EVERY: Duration = Duration::from_millis(100);
/// The simulator waits while a job is this many records behind the topic, until it is within
/// [`RESUME_LAG`]. The busiest partition carries about a third of the records, at about 110 bytes
/// each (lz4): 20,000 records behind stays well inside the mock broker's 5 MB per partition.
const PAUSE_LAG: u64 = 20_000;
const RESUME_LAG: u64 = 5_000;
/// The longest the simulator waits for a job that does not read.
const MAX_PAUSE: Duration = Duration::from_secs(60);
/// Between two progress lines when the output is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

pub(crate) async fn run(args: DemoArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    if args.hours < 2 || args.hours > 48 {
        bail!("--hours: {} is not between 2 and 48", args.hours);
    }
    let dirs = Dirs::prepare(&args.out)?;
    // The jobs and the simulator stop with Ctrl-C, and also when the demo returns early with an error.
    let work = shutdown.child_token();
    let _stop_work_on_return = work.clone().drop_guard();
    let now_ms = qoe_runtime::clock::epoch_ms();
    let minute_ms = 60_000;
    let sim_end_ms = now_ms / minute_ms * minute_ms;
    let sim = SimConfig {
        seed: args.seed,
        start_ms: sim_end_ms - args.hours * 3_600_000,
        duration_ms: args.hours * 3_600_000,
        rooms: args.rooms,
        viewers: args.viewers,
        incidents: true,
        ..SimConfig::default()
    };
    let incidents = qoe_simulator::incidents(&sim);

    let cluster =
        tokio::task::block_in_place(|| MockCluster::new(3)).context("starting the in-process mock Kafka cluster")?;
    let brokers = cluster.bootstrap_servers();
    cluster
        .create_topic(qoe_schemas::BEACONS_TOPIC, BEACON_PARTITIONS, 3)
        .with_context(|| format!("creating topic {}", qoe_schemas::BEACONS_TOPIC))?;
    cluster
        .create_topic(qoe_schemas::DLQ_TOPIC, DLQ_PARTITIONS, 3)
        .with_context(|| format!("creating topic {}", qoe_schemas::DLQ_TOPIC))?;
    // The stream job would create its checkpoint topic through the admin API, which the mock
    // cluster does not serve; compaction does not matter for a demo's few checkpoints.
    cluster
        .create_topic(qoe_stream::CHECKPOINT_TOPIC, 1, 3)
        .with_context(|| format!("creating topic {}", qoe_stream::CHECKPOINT_TOPIC))?;
    println!("broker     librdkafka's in-process mock cluster at {brokers}: the real Kafka protocol, but memory only: it keeps nothing after the demo");

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("--listen {}: binding", args.listen))?;
    let collector_addr = listener.local_addr()?;
    let collector_config = CollectorConfig {
        listen: collector_addr,
        kafka: KafkaConfig {
            brokers: brokers.clone(),
            ..KafkaConfig::default()
        },
        write_keys: vec![WRITE_KEY.to_string()],
        rate_limit: RateLimitConfig {
            beacons_per_sec: 0,
            ..RateLimitConfig::default()
        },
        ..CollectorConfig::default()
    };
    let collector_shutdown = shutdown.child_token();
    let collector = tokio::spawn(qoe_collector::serve(
        listener,
        collector_config,
        collector_shutdown.clone(),
    ));
    println!("collector  http://{collector_addr}/v1/beacons (write key {WRITE_KEY})");

    let stream_metrics = qoe_stream::Metrics::new();
    let mut outputs = stream_outputs(&args, &dirs, &stream_metrics).await?;
    let stream_input = qoe_stream::KafkaInput {
        source: TopicInput {
            kafka: KafkaOptions::new(brokers.as_str()),
            topic: qoe_schemas::BEACONS_TOPIC.to_string(),
            group_id: "qoe-stream-demo".to_string(),
            exit_when_idle: Some(IDLE_EXIT),
        },
        checkpoint_topic: qoe_stream::CHECKPOINT_TOPIC.to_string(),
        early_every: None,
    };
    let mut stream = {
        let metrics = stream_metrics.clone();
        let shutdown = work.clone();
        tokio::task::spawn_blocking(move || {
            qoe_stream::run_kafka(
                &stream_input,
                qoe_rollup::EngineConfig {
                    allowed_lateness_ms: DEMO_LATENESS_MS,
                    ..qoe_rollup::EngineConfig::default()
                },
                &mut outputs,
                &metrics,
                &shutdown,
            )
        })
    };
    println!(
        "stream     minute rollups to {}{}, default alert rules to {}",
        dirs.rollups.display(),
        args.es_url
            .as_deref()
            .map(|url| format!(" and {url}"))
            .unwrap_or_default(),
        dirs.alerts.display()
    );

    let batch_metrics = qoe_batch::Metrics::new();
    let mut batch = tokio::spawn(qoe_batch::run(
        qoe_batch::Input::Kafka(TopicInput {
            kafka: KafkaOptions::new(brokers.as_str()),
            topic: qoe_schemas::BEACONS_TOPIC.to_string(),
            group_id: "qoe-batch-demo".to_string(),
            exit_when_idle: Some(IDLE_EXIT),
        }),
        qoe_batch::JobConfig::new(&dirs.warehouse),
        batch_metrics.clone(),
        work.clone(),
    ));
    // The mock broker drops a partition's oldest records beyond about 5 MB, and the collector keys
    // records by room, so a busy room's partition passes that within seconds: the simulator starts
    // only once the batch job's consumer group has given it the partitions (the stream job assigns
    // them itself, at once).
    let joined = Instant::now();
    while batch_metrics.assigned_partitions.get() == 0 {
        if batch.is_finished() {
            let outcome = (&mut batch).await;
            bail!(
                "the batch job stopped before it joined its consumer group: {}",
                job_end(outcome)
            );
        }
        if shutdown.is_cancelled() {
            bail!("interrupted");
        }
        if joined.elapsed() > GROUP_JOIN_WAIT {
            bail!("the batch job got no partitions from its consumer group within {GROUP_JOIN_WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "batch      Parquet warehouse in {} (consumer group joined in {:.1} s)",
        dirs.warehouse.display(),
        joined.elapsed().as_secs_f64()
    );

    println!(
        "simulator  {} h of traffic, {} .. {} UTC, {} rooms, {} viewers, seed {}, with the scripted incidents:",
        args.hours,
        clock(sim.start_ms),
        clock(sim_end_ms),
        args.rooms,
        args.viewers,
        args.seed
    );
    for incident in &incidents {
        println!("             {}", describe_incident(incident));
    }
    let progress = Progress::new(&brokers, stream_metrics.clone(), batch_metrics.clone())?;
    let pause = Pause::new();
    let sim_run = SimConfig {
        target: Target::Http {
            url: format!("http://{collector_addr}"),
            write_key: WRITE_KEY
                .split_once(':')
                .map(|(_, secret)| secret.to_string())
                .unwrap_or_default(),
        },
        pause: Some(pause.clone()),
        ..sim.clone()
    };
    let mut simulator = tokio::spawn(qoe_simulator::run(sim_run, work.clone()));

    let started = Instant::now();
    let ticker_stop = CancellationToken::new();
    let ticker = tokio::spawn(progress.clone().run(started, pause, ticker_stop.clone()));
    // A job that ends before the simulator does (an error, or an interruption) ends the demo at once.
    let sim_report = tokio::select! {
        report = &mut simulator => report.context("simulator task")??,
        outcome = &mut stream => bail!("the stream job stopped while the simulator was sending: {}", job_end(outcome)),
        outcome = &mut batch => bail!("the batch job stopped while the simulator was sending: {}", job_end(outcome)),
    };
    let stream_report = stream
        .await
        .context("stream job thread")?
        .context("stream job failed")?;
    let batch_report = batch.await.context("batch job task")?.context("batch job failed")?;
    ticker_stop.cancel();
    ticker.await.context("progress task")?;
    progress.print_final(started).await;
    collector_shutdown.cancel();
    collector.await.context("collector task")??;
    if shutdown.is_cancelled() {
        bail!("interrupted: the outputs in {} are incomplete", args.out.display());
    }

    let topic_records = progress.topic_totals().await?;
    let pauses = progress.pauses.load(Ordering::Relaxed);
    // The last client of the broker goes before the broker does.
    drop(progress);
    // Dropping the mock cluster stops and joins its broker threads (it cannot move to another
    // thread, so this one is marked as blocking instead).
    tokio::task::block_in_place(move || drop(cluster));
    println!();
    println!("{sim_report}");
    let stream_read = stream_report.records;
    let batch_read =
        batch_report.accepted + batch_report.duplicates + batch_report.rejected + batch_report.already_stored;
    println!(
        "kafka      {} beacons in {} ({} invalid ones in {}); the broker dropped its {} oldest at its size limit",
        topic_records.beacons,
        qoe_schemas::BEACONS_TOPIC,
        topic_records.dead_letters,
        qoe_schemas::DLQ_TOPIC,
        topic_records.dropped
    );
    if pauses > 0 {
        let times = if pauses == 1 { "once" } else { "times" };
        let count = if pauses == 1 {
            String::new()
        } else {
            format!("{pauses} ")
        };
        println!("simulator  held back {count}{times} until the jobs were within {RESUME_LAG} records of the topic");
    }
    println!(
        "stream     read {stream_read}: {} counted, {} duplicates, {} late; {} windows, {} rollup documents",
        stream_report.counted,
        stream_report.duplicates,
        stream_report.late,
        stream_report.windows,
        stream_report.final_documents
    );
    println!(
        "batch      read {batch_read}: {} stored, {} duplicates, {} flushes",
        batch_report.accepted, batch_report.duplicates, batch_report.flushes
    );
    let mut problems = Vec::new();
    for (job, read) in [("stream", stream_read), ("batch", batch_read)] {
        if read < topic_records.beacons {
            problems.push(format!(
                "the {job} job read {read} records but the topic received {}: the mock broker dropped records the job had not read yet (it keeps about 5 MB per partition)",
                topic_records.beacons
            ));
        } else if read > topic_records.beacons {
            problems.push(format!(
                "the {job} job read {read} records, more than the {} the topic received",
                topic_records.beacons
            ));
        }
    }

    let alerts = read_alerts(&dirs.alerts.join("alerts.ndjson"))?;
    println!();
    problems.extend(print_alerts(&alerts, &incidents));

    let first_day = day(sim.start_ms);
    let last_day = day(sim_end_ms.saturating_sub(1));
    let cdn = qoe_report::cdn_report(
        &dirs.warehouse,
        qoe_report::CdnParams {
            from: first_day,
            to: last_day,
            bounce_secs: 10,
        },
    )
    .await
    .context("the CDN report")?;
    cdn.write_outputs(&dirs.cdn_report)
        .await
        .context("writing the CDN report")?;
    let rooms: Vec<String> = incidents
        .iter()
        .filter_map(|incident| incident.room_id.clone())
        .collect();
    let rooms_report = qoe_report::rooms_report(
        &dirs.warehouse,
        qoe_report::RoomsParams {
            rooms: if rooms.is_empty() {
                vec!["room-0001".to_string()]
            } else {
                rooms
            },
            from: first_day,
            to: last_day,
            spike: qoe_report::SpikeRule::default(),
        },
    )
    .await
    .context("the rooms report")?;
    rooms_report
        .write_outputs(&dirs.rooms_report)
        .await
        .context("writing the rooms report")?;

    println!();
    println!("outputs");
    println!("  rollups    {}/rollups-v1-<date>.ndjson", dirs.rollups.display());
    println!("  alerts     {}", dirs.alerts.join("alerts.ndjson").display());
    println!(
        "  warehouse  {} (play, push, room, play_sessions)",
        dirs.warehouse.display()
    );
    println!("  report     {}", dirs.cdn_report.join("report.html").display());
    println!("  rooms      {}", dirs.rooms_report.join("report.html").display());
    println!();
    println!("the warehouse in DuckDB (https://duckdb.org; `pip install duckdb-cli`):");
    println!("  duckdb -c \"{}\"", duckdb_query(&dirs.warehouse));

    if !problems.is_empty() {
        println!();
        for problem in &problems {
            println!("PROBLEM    {problem}");
        }
        bail!("the demo's checks failed ({} problems above)", problems.len());
    }
    println!();
    println!(
        "checks     every record reached both jobs; the alerts are exactly the scripted incidents, each localised"
    );
    Ok(())
}

/// The demo's output directories.
struct Dirs {
    rollups: PathBuf,
    alerts: PathBuf,
    warehouse: PathBuf,
    cdn_report: PathBuf,
    rooms_report: PathBuf,
}

/// The file that marks a directory as the demo's own, so that a re-run may replace its outputs.
const MARKER: &str = ".qoe-demo";

impl Dirs {
    /// The output directories under `out`, emptied of an earlier demo's outputs. Only the demo's
    /// own subdirectories are removed; a directory that holds anything without the demo's marker is
    /// refused.
    fn prepare(out: &Path) -> anyhow::Result<Dirs> {
        let marker = out.join(MARKER);
        if out.exists() {
            let mut entries = std::fs::read_dir(out).with_context(|| format!("--out {}", out.display()))?;
            if entries.next().is_some() && !marker.exists() {
                bail!(
                    "--out {:?}: not empty and not a directory an earlier demo wrote; choose another",
                    out.display().to_string()
                );
            }
        }
        let dirs = Dirs {
            rollups: out.join("rollups"),
            alerts: out.join("alerts"),
            warehouse: out.join("warehouse"),
            cdn_report: out.join("report-cdn"),
            rooms_report: out.join("report-rooms"),
        };
        for dir in dirs.all() {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error).with_context(|| format!("emptying {}", dir.display())),
            }
        }
        std::fs::create_dir_all(out).with_context(|| format!("--out {}", out.display()))?;
        std::fs::write(
            &marker,
            "written by `qoe demo`; the next demo run replaces its subdirectories here\n",
        )?;
        for dir in [&dirs.rollups, &dirs.alerts] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(dirs)
    }

    fn all(&self) -> [&PathBuf; 5] {
        [
            &self.rollups,
            &self.alerts,
            &self.warehouse,
            &self.cdn_report,
            &self.rooms_report,
        ]
    }
}

/// How a job's task ended, for an error message.
fn job_end<T, E: std::fmt::Display>(outcome: Result<Result<T, E>, tokio::task::JoinError>) -> String {
    match outcome {
        Ok(Ok(_)) => "it finished early (no records for a while, or interrupted)".to_string(),
        Ok(Err(error)) => error.to_string(),
        Err(error) => format!("its task failed: {error}"),
    }
}

/// The stream job's outputs: NDJSON rollups, Elasticsearch with `--es-url`, and the default alert
/// rules last (they are evaluated once a window's documents are in every other output).
async fn stream_outputs(
    args: &DemoArgs,
    dirs: &Dirs,
    metrics: &qoe_stream::Metrics,
) -> anyhow::Result<Vec<Box<dyn Output>>> {
    let mut outputs: Vec<Box<dyn Output>> = vec![Box::new(NdjsonOutput::new(&dirs.rollups)?)];
    let mut alert_sinks = vec![AlertSink::Ndjson(dirs.alerts.clone())];
    if let Some(url) = &args.es_url {
        let es_metrics = qoe_es::EsMetrics::new(&metrics.registry);
        let config = args.es.config(url).with_context(|| format!("--es-url {url:?}"))?;
        let output = EsOutput::connect(config, es_metrics.clone())
            .await
            .with_context(|| format!("--es-url {url:?}"))?;
        outputs.push(Box::new(output));
        let mut alert_config = args.es.config(url)?;
        alert_config.index_prefix = qoe_alert::ALERTS_INDEX.to_string();
        alert_sinks.push(
            AlertSink::elasticsearch(alert_config, es_metrics)
                .await
                .with_context(|| format!("--es-url {url:?}: the alerts index"))?,
        );
    }
    outputs.push(Box::new(AlertOutput::new(RuleSet::default_rules(), alert_sinks, None)?));
    Ok(outputs)
}

/// Live counters while the pipeline runs (one line redrawn on a terminal, a line every few seconds
/// otherwise), and the simulator held back while a job falls too far behind the topic.
#[derive(Clone)]
struct Progress {
    /// Reads the topics' watermarks (one client for the whole run).
    watermarks: Arc<BaseConsumer>,
    stream: qoe_stream::Metrics,
    batch: qoe_batch::Metrics,
    /// How often the simulator was held back.
    pauses: Arc<AtomicU64>,
}

/// Where the pipeline is.
struct Snapshot {
    in_topic: u64,
    stream_read: u64,
    batch_read: u64,
}

impl Progress {
    fn new(brokers: &str, stream: qoe_stream::Metrics, batch: qoe_batch::Metrics) -> anyhow::Result<Self> {
        let watermarks: BaseConsumer = ClientSpec::consumer(
            "the client that reads the topics' watermarks",
            &KafkaOptions::new(brokers),
            "qoe-demo-watermarks",
        )
        .create()?;
        Ok(Progress {
            watermarks: Arc::new(watermarks),
            stream,
            batch,
            pauses: Arc::default(),
        })
    }

    async fn topic_totals(&self) -> anyhow::Result<TopicTotals> {
        let watermarks = Arc::clone(&self.watermarks);
        tokio::task::spawn_blocking(move || topic_totals(&watermarks)).await?
    }

    async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let topic = self.topic_totals().await?;
        Ok(Snapshot {
            in_topic: topic.beacons,
            stream_read: metrics::total(&self.stream.beacons),
            batch_read: metrics::total(&self.batch.records),
        })
    }

    fn line(&self, started: Instant, snapshot: &Snapshot) -> String {
        format!(
            "{:>5.1} s  kafka {} beacons | stream read {}, {} rollups | batch read {}, {} flushes",
            started.elapsed().as_secs_f64(),
            snapshot.in_topic,
            snapshot.stream_read,
            self.stream.documents.with_label_values(&["final"]).get(),
            snapshot.batch_read,
            self.batch.flushes.get(),
        )
    }

    async fn run(self, started: Instant, pause: Pause, stop: CancellationToken) {
        let terminal = std::io::stdout().is_terminal();
        let print_every = if terminal {
            Duration::from_millis(500)
        } else {
            LOG_EVERY
        };
        let mut printed = Instant::now();
        let mut paused_since: Option<Instant> = None;
        // Set once a pause outlasted MAX_PAUSE: a job that stopped reading would otherwise hold the
        // simulator to a trickle for good. The simulator then goes on at full speed, and the final
        // check says what was lost.
        let mut gave_up = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(PACE_EVERY) => {}
            }
            let snapshot = self.snapshot().await.ok();
            let lag = snapshot.as_ref().map(|snapshot| {
                snapshot
                    .in_topic
                    .saturating_sub(snapshot.stream_read.min(snapshot.batch_read))
            });
            match paused_since {
                None if !gave_up && lag.is_some_and(|lag| lag > PAUSE_LAG) => {
                    pause.pause();
                    paused_since = Some(Instant::now());
                    self.pauses.fetch_add(1, Ordering::Relaxed);
                }
                Some(since) if since.elapsed() > MAX_PAUSE => {
                    pause.resume();
                    paused_since = None;
                    gave_up = true;
                }
                Some(_) if lag.is_some_and(|lag| lag < RESUME_LAG) => {
                    pause.resume();
                    paused_since = None;
                }
                _ => {}
            }
            let Some(snapshot) = snapshot else {
                continue;
            };
            if printed.elapsed() >= print_every {
                printed = Instant::now();
                let line = self.line(started, &snapshot);
                if terminal {
                    print!("\r\x1b[2K{line}");
                    let _ = std::io::stdout().flush();
                } else {
                    println!("{line}");
                }
            }
        }
    }

    async fn print_final(&self, started: Instant) {
        let line = match self.snapshot().await {
            Ok(snapshot) => self.line(started, &snapshot),
            Err(error) => format!("(no final counts: {error})"),
        };
        if std::io::stdout().is_terminal() {
            println!("\r\x1b[2K{line}");
        } else {
            println!("{line}");
        }
    }
}

/// Records in the beacon and dead-letter topics.
struct TopicTotals {
    beacons: u64,
    dead_letters: u64,
    /// Beacons the broker no longer holds (its oldest records, dropped at its size limit).
    dropped: u64,
}

/// Records each topic received (the partitions' high watermarks: the mock cluster's dropped records
/// count too, so a job that read fewer than this missed some).
fn topic_totals(consumer: &BaseConsumer) -> anyhow::Result<TopicTotals> {
    let beacons = watermarks(consumer, qoe_schemas::BEACONS_TOPIC)?;
    Ok(TopicTotals {
        beacons: beacons.high,
        dead_letters: watermarks(consumer, qoe_schemas::DLQ_TOPIC)?.high,
        dropped: beacons.low,
    })
}

/// A query to paste: plays, failures and average first frame per CDN, from `play_sessions`.
fn duckdb_query(warehouse: &Path) -> String {
    format!(
        "SELECT cdn, count(*) AS plays, round(100 * avg(CASE WHEN fatal_error THEN 1 ELSE 0 END), 2) AS failure_pct, \
         round(median(first_frame_ms)) AS first_frame_p50_ms FROM read_parquet('{}/play_sessions/**/*.parquet', hive_partitioning = true) \
         GROUP BY cdn ORDER BY cdn",
        warehouse.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("qoe-demo-dirs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_rerun_replaces_the_demo_outputs_and_keeps_other_files() {
        let out = scratch("rerun");
        let first = Dirs::prepare(&out).unwrap();
        std::fs::create_dir_all(first.warehouse.join("play")).unwrap();
        std::fs::write(first.warehouse.join("play/stale.parquet"), "old").unwrap();
        std::fs::write(first.alerts.join("alerts.ndjson"), "{}\n").unwrap();
        std::fs::write(out.join("notes.txt"), "mine").unwrap();

        let second = Dirs::prepare(&out).unwrap();
        assert!(!second.warehouse.exists(), "the old warehouse is gone");
        assert_eq!(
            std::fs::read_dir(&second.alerts).unwrap().count(),
            0,
            "the old alerts are gone"
        );
        assert!(second.rollups.is_dir());
        assert_eq!(std::fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn a_directory_without_the_marker_is_refused_untouched() {
        let out = scratch("foreign");
        std::fs::create_dir_all(out.join("warehouse")).unwrap();
        std::fs::write(out.join("warehouse/data.parquet"), "theirs").unwrap();
        let error = Dirs::prepare(&out).err().expect("refused").to_string();
        assert!(
            error.contains("not empty and not a directory an earlier demo wrote"),
            "{error}"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("warehouse/data.parquet")).unwrap(),
            "theirs"
        );
        // An empty directory is fine.
        let empty = scratch("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert!(Dirs::prepare(&empty).is_ok());
        std::fs::remove_dir_all(&out).unwrap();
        std::fs::remove_dir_all(&empty).unwrap();
    }
}
