//! `qoe topics create`: creates the pipeline's topics through the Kafka admin API.
//!
//! The collector never creates topics itself: production clusters usually forbid auto-creation, and
//! partition count and replication are decisions, not defaults.

use anyhow::{bail, Context};
use qoe_runtime::kafka::{create_topics, parse_overrides, KafkaOptions, TopicOutcome};

/// Manage the pipeline's Kafka topics.
#[derive(Debug, clap::Args)]
pub(crate) struct TopicsArgs {
    #[command(subcommand)]
    command: TopicsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TopicsCommand {
    /// Create the topics that do not exist yet (existing ones are left as they are).
    Create(CreateArgs),
}

#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// Kafka bootstrap brokers, comma-separated host:port.
    #[arg(long, env = "QOE_BROKERS")]
    brokers: String,
    /// Partitions of each topic: the most consumers a job can run in parallel.
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// Replicas of each partition (use at least 3 in production, with min.insync.replicas=2).
    #[arg(long, default_value_t = 3)]
    replication: i32,
    /// A topic to create; repeat for several. Default: qoe.beacons.v1 and qoe.beacons.dlq.
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// A librdkafka client property KEY=VALUE (TLS, SASL, ...); repeat for several.
    #[arg(long = "kafka-option")]
    kafka_options: Vec<String>,
}

pub(crate) async fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let TopicsCommand::Create(args) = args.command;
    if args.partitions < 1 {
        bail!("--partitions: {} is not a positive number", args.partitions);
    }
    if args.replication < 1 {
        bail!("--replication: {} is not a positive number", args.replication);
    }
    let topics: Vec<String> = if args.topics.is_empty() {
        vec![
            qoe_schemas::BEACONS_TOPIC.to_string(),
            qoe_schemas::DLQ_TOPIC.to_string(),
        ]
    } else {
        args.topics.clone()
    };
    let options = KafkaOptions::new(&args.brokers).with_overrides(parse_overrides(&args.kafka_options)?);
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let outcomes = create_topics(&options, &names, args.partitions, args.replication, &[])
        .await
        .with_context(|| format!("creating topics on {}", args.brokers))?;
    for (topic, outcome) in outcomes {
        let what = match outcome {
            TopicOutcome::Created => format!(
                "created ({} partitions, {} replicas)",
                args.partitions, args.replication
            ),
            TopicOutcome::Existed => "exists, left as it is".to_string(),
        };
        println!("{topic}: {what}");
    }
    Ok(())
}
