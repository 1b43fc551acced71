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

/// Everything a report can fail with. Messages are lowercase and quote the bad input; a variant with
/// a cause holds it as its [`std::error::Error::source`] and does not repeat it in its message.
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
    /// DataFusion failed to plan or run a query, or to register a table.
    #[error("{context}")]
    Query {
        /// What was being done ("running the cdn_daily query", "registering table \"play\"").
        context: String,
        /// DataFusion's error.
        #[source]
        source: datafusion::error::DataFusionError,
    },
    /// Arrow failed to build or convert a batch.
    #[error("{context}")]
    Arrow {
        /// Which table or column.
        context: String,
        /// Arrow's error.
        #[source]
        source: arrow::error::ArrowError,
    },
    /// Writing a Parquet output failed.
    #[error("writing {path:?}")]
    Parquet {
        /// The output file.
        path: PathBuf,
        /// Parquet's error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Reading or writing a file failed.
    #[error("{operation} {path:?}")]
    Io {
        /// What was being done ("creating", "writing", …).
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// The blocking task writing an output panicked or was cancelled.
    #[error("writing {path:?}: the output task failed")]
    Task {
        /// The output file.
        path: PathBuf,
        /// Why the task ended.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Attaches what was being done to a DataFusion or Arrow error, as a [`ReportError`] whose message
/// is the context and whose source is the error.
pub(crate) trait Context<T> {
    /// The error, if any, in `context` (called only on an error).
    fn with_context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, datafusion::error::DataFusionError> {
    fn with_context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| ReportError::Query {
            context: context(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, arrow::error::ArrowError> {
    fn with_context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| ReportError::Arrow {
            context: context(),
            source,
        })
    }
}

/// The result type of this crate.
pub type Result<T, E = ReportError> = std::result::Result<T, E>;
