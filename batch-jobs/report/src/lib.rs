//! `qoe-report`: the long-horizon reports of qoe-pipeline, computed in-process with DataFusion over the
//! Hive-partitioned Parquet warehouse that `qoe batch` writes (`<warehouse>/<table>/dt=…/hour=…/*.parquet`).
//!
//! Four reports, one `async fn` each, every one returning a struct that holds its result tables as
//! Arrow [`RecordBatch`](arrow::record_batch::RecordBatch)es and can write them with `write_outputs`:
//! - [`cdn_report`]: per CDN per day (and per region, per ISP) plays, failure and EBVS rates, first-frame
//!   percentiles and their DNS/connect/first-packet parts, stall ratio, stalls per hour, startup skip,
//!   live latency, joins, leaves, bounce rate and peak concurrent viewers;
//! - [`rooms_report`]: minute curves of chosen rooms per CDN, with technical-exit episodes (joins and
//!   leaves spiking together) localised to the publisher or to one CDN;
//! - [`ab_report`]: the arms of an A/B experiment compared on the main QoS/QoE metrics with 95 %
//!   confidence intervals and the difference to the control arm;
//! - [`forecast_report`]: next-day peak concurrent viewers and traffic per CDN from a seasonal
//!   hour-of-day model, with its backtest error on the history.
//!
//! Guarantees:
//! - every number comes from SQL run by DataFusion over `ListingTable`s (the small closed-form
//!   statistics of the A/B and forecast reports are computed from those aggregates);
//! - files whose names start with `.` or do not end in `.parquet` are never read (in-progress writes);
//! - a missing table, partition or day yields empty results and a note, never an error; a rate whose
//!   denominator is zero is null, not 0;
//! - sessions are attributed to the UTC day of their `start_time` (a session crossing midnight counts
//!   on its first day); beacon counts (joins, leaves) to the UTC day of their `event_time`;
//! - outputs are Parquet files plus one self-contained `report.html` (inline CSS, SVG and JS, no
//!   network fetch). The metric definitions are in `docs/reports.md`.

mod ab;
mod cdn;
mod forecast;
mod html;
mod output;
mod quantile;
mod rooms;
mod warehouse;

use std::path::PathBuf;

pub use ab::{ab_report, AbParams, AbReport};
pub use cdn::{cdn_report, CdnParams, CdnReport};
pub use forecast::{forecast_report, ForecastParams, ForecastReport};
pub use html::format_float;
pub use output::OutputTable;
pub use rooms::{rooms_report, RoomsParams, RoomsReport, SpikeRule};
pub use warehouse::parse_date;

/// Everything a report can fail with. Messages are lowercase and quote the bad input.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A date argument that is not `YYYY-MM-DD`.
    #[error("{flag} {value:?}: not a date (expected YYYY-MM-DD)")]
    BadDate {
        /// The flag, e.g. `--from`.
        flag: &'static str,
        /// What was given.
        value: String,
    },
    /// Another invalid argument.
    #[error("{flag} {value:?}: {reason}")]
    BadArgument {
        /// The flag, e.g. `--room`.
        flag: &'static str,
        /// What was given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The warehouse root is not a directory.
    #[error("--warehouse {0:?}: not a directory")]
    NoWarehouse(PathBuf),
    /// DataFusion failed to plan or run a query.
    #[error("query failed: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// Arrow failed to build or convert a batch.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Writing Parquet failed.
    #[error("writing parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Reading or writing a file failed.
    #[error("{path:?}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A blocking write task panicked or was cancelled.
    #[error("output task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The result type of this crate.
pub type Result<T, E = ReportError> = std::result::Result<T, E>;
