//! `qoe report`: the warehouse reports (per CDN, per room, A/B, forecast), computed in-process by
//! `qoe-report` with DataFusion, written as Parquet tables and a self-contained `report.html`.

use std::path::{Path, PathBuf};

use qoe_report::{parse_date, SpikeRule};

/// Reports over the Parquet warehouse.
#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    #[command(subcommand)]
    command: ReportCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ReportCommand {
    /// Per CDN per day (and per region, per ISP): plays, failures, EBVS, first frame, stalls, joins, bounce, peak viewers.
    Cdn(CdnArgs),
    /// Minute curves of rooms with technical-exit episodes localised to the publisher or a CDN.
    Rooms(RoomsArgs),
    /// Arms of an A/B experiment with 95 % confidence intervals and the difference to the control.
    Ab(AbArgs),
    /// Next-day peak concurrent viewers and traffic per CDN, with the backtest error.
    Forecast(ForecastArgs),
}

#[derive(Debug, clap::Args)]
struct Common {
    /// The warehouse root (holding play/, room/, play_sessions/).
    #[arg(long, env = "QOE_WAREHOUSE")]
    warehouse: PathBuf,
    /// Output directory (created if needed).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct CdnArgs {
    #[command(flatten)]
    common: Common,
    /// First UTC day, YYYY-MM-DD.
    #[arg(long)]
    from: String,
    /// Last UTC day (inclusive), YYYY-MM-DD.
    #[arg(long)]
    to: String,
    /// A join followed by a leave of the same session within this many seconds is a bounce.
    #[arg(long, default_value_t = 10)]
    bounce_secs: u32,
}

#[derive(Debug, clap::Args)]
struct RoomsArgs {
    #[command(flatten)]
    common: Common,
    /// A room id; repeat for several.
    #[arg(long = "room", required = true)]
    rooms: Vec<String>,
    /// First UTC day, YYYY-MM-DD.
    #[arg(long)]
    from: String,
    /// Last UTC day (inclusive), YYYY-MM-DD.
    #[arg(long)]
    to: String,
    /// Spike: at least this multiple of the trailing median.
    #[arg(long, default_value_t = 3.0)]
    spike_k: f64,
    /// Trailing median window in minutes.
    #[arg(long, default_value_t = 30)]
    spike_window: u32,
    /// Spike: at least this many joins (and leaves) in the minute.
    #[arg(long, default_value_t = 5)]
    spike_floor: u32,
}

#[derive(Debug, clap::Args)]
struct AbArgs {
    #[command(flatten)]
    common: Common,
    /// The experiment name (key of `exp`).
    #[arg(long)]
    experiment: String,
    /// First UTC day, YYYY-MM-DD (by session start).
    #[arg(long)]
    from: String,
    /// Last UTC day (inclusive), YYYY-MM-DD.
    #[arg(long)]
    to: String,
    /// The control arm (default: the alphabetically first arm).
    #[arg(long)]
    control: Option<String>,
}

#[derive(Debug, clap::Args)]
struct ForecastArgs {
    #[command(flatten)]
    common: Common,
    /// Last day of history, YYYY-MM-DD; the forecast is for the next day.
    #[arg(long)]
    to: String,
    /// Days of history (backtest span).
    #[arg(long, default_value_t = 28)]
    history_days: u32,
    /// Days in the hour-of-day profile.
    #[arg(long, default_value_t = 7)]
    profile_days: u32,
}

fn print(out: &Path, written: &[PathBuf], notes: &[String]) {
    for note in notes {
        println!("note: {note}");
    }
    println!("wrote {} files to {}:", written.len(), out.display());
    for path in written {
        println!("  {}", path.display());
    }
}

/// Runs one report and prints where its outputs are.
pub(crate) async fn run(args: ReportArgs) -> anyhow::Result<()> {
    match args.command {
        ReportCommand::Cdn(a) => {
            let params = qoe_report::CdnParams {
                from: parse_date("--from", &a.from)?,
                to: parse_date("--to", &a.to)?,
                bounce_secs: a.bounce_secs,
            };
            let report = qoe_report::cdn_report(&a.common.warehouse, params).await?;
            let written = report.write_outputs(&a.common.out).await?;
            print(&a.common.out, &written, &report.notes);
        }
        ReportCommand::Rooms(a) => {
            let params = qoe_report::RoomsParams {
                rooms: a.rooms,
                from: parse_date("--from", &a.from)?,
                to: parse_date("--to", &a.to)?,
                spike: SpikeRule {
                    k: a.spike_k,
                    window_minutes: a.spike_window,
                    floor: a.spike_floor,
                },
            };
            let report = qoe_report::rooms_report(&a.common.warehouse, params).await?;
            let written = report.write_outputs(&a.common.out).await?;
            println!("{} technical-exit episodes", report.episodes.num_rows());
            print(&a.common.out, &written, &report.notes);
        }
        ReportCommand::Ab(a) => {
            let params = qoe_report::AbParams {
                experiment: a.experiment,
                from: parse_date("--from", &a.from)?,
                to: parse_date("--to", &a.to)?,
                control: a.control,
            };
            let report = qoe_report::ab_report(&a.common.warehouse, params).await?;
            let written = report.write_outputs(&a.common.out).await?;
            print(&a.common.out, &written, &report.notes);
        }
        ReportCommand::Forecast(a) => {
            let params = qoe_report::ForecastParams {
                to: parse_date("--to", &a.to)?,
                history_days: a.history_days,
                profile_days: a.profile_days,
            };
            let report = qoe_report::forecast_report(&a.common.warehouse, params).await?;
            let written = report.write_outputs(&a.common.out).await?;
            print(&a.common.out, &written, &report.notes);
        }
    }
    Ok(())
}
