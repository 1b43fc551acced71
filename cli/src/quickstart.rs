//! `qoe quickstart`: the collector fed by the simulator, on an in-process Kafka-protocol broker.
//!
//! The broker is librdkafka's mock cluster: it speaks the real Kafka protocol over loopback sockets
//! but keeps everything in memory and loses it on exit. It is for trying the pipeline, not for data.

use std::net::SocketAddr;

use anyhow::Context;
use qoe_runtime::kafka::{watermarks, ClientSpec, KafkaOptions};
use rdkafka::consumer::BaseConsumer;
use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;

use qoe_collector::config::KafkaConfig;
use qoe_collector::CollectorConfig;
use qoe_simulator::{SimConfig, Target};

/// Runs an in-process broker, the collector and the simulator (nothing is kept).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct QuickstartArgs {
    /// Address for the collector.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Simulated minutes of traffic to generate, ending now.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Simulator seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Average concurrent viewers in the simulation.
    #[arg(long, default_value_t = 1000)]
    viewers: usize,
    /// Keep the broker and collector running after the simulation, until Ctrl-C.
    #[arg(long)]
    hold: bool,
}

const WRITE_KEY: &str = "quickstart:quickstart-secret";
const PARTITIONS: i32 = 4;

pub(crate) async fn run(args: QuickstartArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let duration_ms = args.minutes * 60_000;
    let cluster = MockCluster::new(3).context("starting the in-process mock Kafka cluster")?;
    let brokers = cluster.bootstrap_servers();
    for topic in [qoe_schemas::BEACONS_TOPIC, qoe_schemas::DLQ_TOPIC] {
        cluster
            .create_topic(topic, PARTITIONS, 3)
            .with_context(|| format!("creating topic {topic}"))?;
    }
    println!(
        "broker     librdkafka in-process mock cluster at {brokers}: real Kafka protocol, memory only, keeps nothing"
    );

    let config = CollectorConfig {
        listen: args.listen,
        kafka: KafkaConfig {
            brokers: brokers.clone(),
            ..KafkaConfig::default()
        },
        write_keys: vec![WRITE_KEY.to_string()],
        ..CollectorConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let collector_shutdown = shutdown.child_token();
    let collector = tokio::spawn(qoe_collector::serve(listener, config, collector_shutdown.clone()));
    println!(
        "collector  http://{}/v1/beacons (write key {WRITE_KEY}), metrics at /metrics",
        args.listen
    );

    let now_ms = qoe_runtime::clock::epoch_ms();
    let sim = SimConfig {
        seed: args.seed,
        start_ms: now_ms.saturating_sub(duration_ms),
        duration_ms,
        viewers: args.viewers,
        // A few deliberately bad beacons, to show rejections and the dead-letter topic at work.
        invalid_fraction: 0.002,
        target: Target::Http {
            url: format!("http://{}", args.listen),
            write_key: WRITE_KEY
                .split_once(':')
                .map(|(_, secret)| secret.to_string())
                .unwrap_or_default(),
        },
        ..SimConfig::default()
    };
    println!(
        "simulator  {} minutes of traffic, {} viewers, seed {}",
        args.minutes, args.viewers, args.seed
    );
    let report = qoe_simulator::run(sim, shutdown.clone()).await?;
    println!("{report}");

    let (beacons, dead_letters) = tokio::task::spawn_blocking(move || topic_counts(&brokers)).await??;
    println!(
        "kafka      {} records in {}, {} in {}",
        beacons,
        qoe_schemas::BEACONS_TOPIC,
        dead_letters,
        qoe_schemas::DLQ_TOPIC
    );

    if args.hold && !shutdown.is_cancelled() {
        println!("holding: the collector keeps running until Ctrl-C");
        shutdown.cancelled().await;
    }
    collector_shutdown.cancel();
    collector.await??;
    drop(cluster);
    Ok(())
}

/// Records in the beacon and dead-letter topics, from the partitions' watermarks.
fn topic_counts(brokers: &str) -> anyhow::Result<(u64, u64)> {
    let consumer: BaseConsumer = ClientSpec::consumer(
        "the quickstart's counter",
        &KafkaOptions::new(brokers),
        "qoe-quickstart-count",
    )
    .create()?;
    Ok((
        watermarks(&consumer, qoe_schemas::BEACONS_TOPIC)?.records(),
        watermarks(&consumer, qoe_schemas::DLQ_TOPIC)?.records(),
    ))
}
