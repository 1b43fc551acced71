//! `qoe simulate`: generates deterministic live-video beacon traffic (see the `qoe-simulator` crate) and
//! sends it to a collector, writes it to an NDJSON file, or only counts it.

use std::path::PathBuf;

use anyhow::{bail, Context};
use qoe_simulator::{SimConfig, SimError, Target};
use tokio_util::sync::CancellationToken;

/// Options of `qoe simulate`.
#[derive(Debug, clap::Args)]
pub(crate) struct SimulateArgs {
    /// Where beacons go: `http://HOST:PORT` (base URL of a collector), `file:PATH` (NDJSON, one beacon
    /// per line), or `discard` (generate and count only)
    #[arg(long, env = "QOE_SIM_TARGET")]
    target: String,

    /// Write key sent as `Authorization: Bearer KEY` (required for http targets)
    #[arg(long, env = "QOE_WRITE_KEY", hide_env_values = true)]
    write_key: Option<String>,

    /// Seed of the simulation: the same seed and settings give the same beacons
    #[arg(long, env = "QOE_SIM_SEED", default_value_t = 1)]
    seed: u64,

    /// Simulated clock at the start: epoch ms, `now`, or an offset into the past like `-3h` or `-90m`
    #[arg(long, env = "QOE_SIM_START", default_value = "now", allow_hyphen_values = true)]
    start: String,

    /// Simulated time span, like `45s`, `30m`, `2h` or `1h30m`
    #[arg(long, env = "QOE_SIM_DURATION", default_value = "10m")]
    duration: String,

    /// Number of rooms (live streams), each with one publisher
    #[arg(long, env = "QOE_SIM_ROOMS", default_value_t = 50)]
    rooms: usize,

    /// Average number of concurrent viewers over all rooms
    #[arg(long, env = "QOE_SIM_VIEWERS", default_value_t = 2_000)]
    viewers: usize,

    /// Cap on beacons sent per second (real time); no cap by default
    #[arg(long, env = "QOE_SIM_RATE")]
    rate: Option<u64>,

    /// Beacons per request
    #[arg(long, env = "QOE_SIM_BATCH_SIZE", default_value_t = 100)]
    batch_size: usize,

    /// Gzip request bodies
    #[arg(long, env = "QOE_SIM_GZIP")]
    gzip: bool,

    /// Requests in flight at once
    #[arg(long, env = "QOE_SIM_CONCURRENCY", default_value_t = 4)]
    concurrency: usize,

    /// Build every request body before sending, so that a benchmark measures the collector only
    #[arg(long, env = "QOE_SIM_PREGENERATE")]
    pregenerate: bool,

    /// Stop after this many beacons
    #[arg(long, env = "QOE_SIM_MAX_BEACONS")]
    max_beacons: Option<u64>,

    /// Leave out the scripted incidents (a cdn-b stall incident, a publisher network jitter)
    #[arg(long, env = "QOE_SIM_NO_INCIDENTS")]
    no_incidents: bool,

    /// Share of beacons made deliberately invalid, 0 to 1, to exercise rejection
    #[arg(long, env = "QOE_SIM_INVALID_FRACTION", default_value_t = 0.0)]
    invalid_fraction: f64,

    /// Send beacons stamped in the future at once instead of holding them until the real clock
    /// reaches their time (the collector refuses timestamps more than a few minutes ahead)
    #[arg(long, env = "QOE_SIM_SEND_FUTURE")]
    send_future: bool,

    /// Start with no viewers in the rooms instead of the average number already watching
    #[arg(long, env = "QOE_SIM_COLD_START")]
    cold_start: bool,

    /// Also write the report as JSON to this file
    #[arg(long, env = "QOE_SIM_REPORT_JSON")]
    report_json: Option<PathBuf>,
}

/// Runs `qoe simulate`: prints the report summary to stdout at the end.
pub(crate) async fn run(args: SimulateArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = config_from_args(&args, qoe_runtime::clock::epoch_ms())?;
    tracing::info!(
        start_ms = config.start_ms,
        duration_ms = config.duration_ms,
        "simulated clock set"
    );
    let report = qoe_simulator::run(config, shutdown).await?;
    println!("{report}");
    let Some(path) = args.report_json else {
        return Ok(());
    };
    let json = serde_json::to_vec_pretty(&report).context("cannot serialize the report")?;
    let written_path = path.clone();
    tokio::task::spawn_blocking(move || std::fs::write(&written_path, json))
        .await
        .context("report writer task failed")?
        .with_context(|| format!("--report-json: cannot write {:?}", path.display().to_string()))?;
    Ok(())
}

/// Builds the simulator config; `now_ms` resolves `--start now` and offsets.
fn config_from_args(args: &SimulateArgs, now_ms: u64) -> anyhow::Result<SimConfig> {
    let target = parse_target(&args.target, args.write_key.as_deref())?;
    let start_ms = parse_start(&args.start, now_ms)?;
    let duration_ms = parse_duration_ms(&args.duration).with_context(|| {
        format!(
            "--duration: {:?} is not a duration like 45s, 30m, 2h or 1h30m",
            args.duration
        )
    })?;
    if !(0.0..=1.0).contains(&args.invalid_fraction) {
        bail!("--invalid-fraction: {} is not between 0 and 1", args.invalid_fraction);
    }
    let config = SimConfig {
        seed: args.seed,
        start_ms,
        duration_ms,
        rooms: args.rooms,
        viewers: args.viewers,
        incidents: !args.no_incidents,
        warm_start: !args.cold_start,
        invalid_fraction: args.invalid_fraction,
        max_beacons: args.max_beacons,
        target,
        batch_size: args.batch_size,
        gzip: args.gzip,
        rate: args.rate,
        concurrency: args.concurrency,
        pregenerate: args.pregenerate,
        hold_future: !args.send_future,
        ..SimConfig::default()
    };
    config.validate().map_err(name_the_flag)?;
    Ok(config)
}

/// Rewrites a config error in terms of the command-line flag that set the value.
fn name_the_flag(error: SimError) -> anyhow::Error {
    match error {
        SimError::InvalidConfig { field, problem } => {
            let flag = match field {
                "start_ms" => "--start",
                "duration_ms" => "--duration",
                "rooms" => "--rooms",
                "batch_size" => "--batch-size",
                "concurrency" => "--concurrency",
                "rate" => "--rate",
                "invalid_fraction" => "--invalid-fraction",
                "write_key" => "--write-key",
                other => other,
            };
            anyhow::anyhow!("{flag}: {problem}")
        }
        SimError::InvalidUrl { url, problem } => anyhow::anyhow!("--target: {url:?}: {problem}"),
        other => other.into(),
    }
}

fn parse_target(text: &str, write_key: Option<&str>) -> anyhow::Result<Target> {
    if text == "discard" {
        return Ok(Target::Discard);
    }
    if let Some(path) = text.strip_prefix("file:") {
        if path.is_empty() {
            bail!("--target: {text:?} has no path, use file:PATH");
        }
        return Ok(Target::File(PathBuf::from(path)));
    }
    if text.starts_with("http://") || text.starts_with("https://") {
        let Some(write_key) = write_key.filter(|key| !key.is_empty()) else {
            bail!("--write-key (or QOE_WRITE_KEY) is required for the http target {text:?}");
        };
        return Ok(Target::Http {
            url: text.to_string(),
            write_key: write_key.to_string(),
        });
    }
    bail!("--target: {text:?} is not http://HOST:PORT, file:PATH or discard")
}

/// `now`, epoch ms, or a negative offset from now such as `-3h`.
fn parse_start(text: &str, now_ms: u64) -> anyhow::Result<u64> {
    let problem = || format!("--start: {text:?} is not epoch ms, `now`, or an offset into the past like -3h or -90m");
    let trimmed = text.trim();
    if trimmed == "now" {
        return Ok(now_ms);
    }
    if let Some(offset) = trimmed.strip_prefix('-') {
        let offset_ms = parse_duration_ms(offset).with_context(problem)?;
        return now_ms
            .checked_sub(offset_ms)
            .with_context(|| format!("--start: {text:?} is before 1970"));
    }
    trimmed.parse::<u64>().with_context(problem)
}

/// A duration made of `<number><unit>` parts, units `ms`, `s`, `m`, `h`, `d`: `90s`, `1h30m`. A bare
/// `0` is zero.
fn parse_duration_ms(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    if text == "0" {
        return Ok(0);
    }
    let mut total_ms: u64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        bail!("empty duration");
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            bail!("expected a number at {rest:?}");
        }
        let number: u64 = rest[..digits]
            .parse()
            .with_context(|| format!("{:?} is too large", &rest[..digits]))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => bail!("{number} has no unit (ms, s, m, h or d)"),
            other => bail!("unknown unit {other:?}, use ms, s, m, h or d"),
        };
        rest = &rest[unit_len..];
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|part| total_ms.checked_add(part))
            .context("duration is too large")?;
    }
    Ok(total_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    const NOW: u64 = 1_763_800_000_000;

    fn config(arguments: &[&str]) -> anyhow::Result<SimConfig> {
        let cli = Cli::try_parse_from(std::iter::once("simulate").chain(arguments.iter().copied()))?;
        config_from_args(&cli.args, NOW)
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("45s").unwrap(), 45_000);
        assert_eq!(parse_duration_ms("30m").unwrap(), 1_800_000);
        assert_eq!(parse_duration_ms("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration_ms("250ms").unwrap(), 250);
        assert_eq!(parse_duration_ms("0").unwrap(), 0);
        assert!(parse_duration_ms("10").is_err());
        assert!(parse_duration_ms("10x").is_err());
        assert!(parse_duration_ms("").is_err());
        assert!(parse_duration_ms("h").is_err());
    }

    #[test]
    fn start_accepts_now_epoch_ms_and_past_offsets() {
        assert_eq!(parse_start("now", NOW).unwrap(), NOW);
        assert_eq!(parse_start("-3h", NOW).unwrap(), NOW - 3 * 3_600_000);
        assert_eq!(parse_start("-90m", NOW).unwrap(), NOW - 90 * 60_000);
        assert_eq!(parse_start("1700000000000", NOW).unwrap(), 1_700_000_000_000);
        let error = parse_start("yesterday", NOW).unwrap_err().to_string();
        assert!(error.starts_with("--start: \"yesterday\""), "{error}");
    }

    #[test]
    fn flags_build_the_config() {
        let built = config(&[
            "--target",
            "http://localhost:8080",
            "--write-key",
            "k",
            "--start",
            "-2h",
            "--duration",
            "1h",
            "--seed",
            "9",
            "--gzip",
            "--no-incidents",
            "--rate",
            "5000",
        ])
        .unwrap();
        assert_eq!(built.start_ms, NOW - 7_200_000);
        assert_eq!(built.duration_ms, 3_600_000);
        assert_eq!(built.seed, 9);
        assert!(built.gzip && !built.incidents && built.hold_future && built.warm_start);
        assert_eq!(built.rate, Some(5_000));
        assert_eq!(
            built.target,
            Target::Http {
                url: "http://localhost:8080".to_string(),
                write_key: "k".to_string()
            }
        );
        let file = config(&["--target", "file:/tmp/x.ndjson"]).unwrap();
        assert_eq!(file.target, Target::File(PathBuf::from("/tmp/x.ndjson")));
    }

    #[test]
    fn bad_flags_name_the_flag_and_quote_the_value() {
        // Unaffected by a QOE_WRITE_KEY in the environment only if it is unset; skip the check then.
        if std::env::var_os("QOE_WRITE_KEY").is_none() {
            let error = config(&["--target", "http://h:1"]).unwrap_err().to_string();
            assert!(
                error.contains("--write-key") && error.contains("\"http://h:1\""),
                "{error}"
            );
        }
        let error = config(&["--target", "kafka://x"]).unwrap_err().to_string();
        assert!(error.starts_with("--target: \"kafka://x\""), "{error}");
        let error = config(&["--target", "discard", "--duration", "ten"])
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("--duration: \"ten\""), "{error}");
        let error = config(&["--target", "discard", "--rooms", "0"])
            .unwrap_err()
            .to_string();
        assert_eq!(error, "--rooms: must be at least 1, got 0");
        let error = config(&["--target", "https://h:1", "--write-key", "k"])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("--target: \"https://h:1\": https is not supported"),
            "{error}"
        );
    }
}
