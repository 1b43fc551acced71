/*
[dependencies]
qoe-arroyo-udfs = { git = "https://github.com/qoe-pipeline/qoe-pipeline" }
*/
//! Arroyo UDF `qoe_stats(TEXT, TEXT) -> TEXT`: `{avg,sum,count[,p50][,p90][,p99]}` of a sketch made by
//! `qoe_sketch`, with the percentiles named in the second argument (e.g. `'p50,p90,p99'`), exactly
//! as the embedded engine writes the rollup document's statistics.
//!
//! This file is the UDF definition Arroyo compiles: the comment above is its `[dependencies]`
//! (the local build uses `Cargo.toml`'s path dependency instead).

use arroyo_udf_plugin::udf;

/// The statistics as JSON text; NULL for a NULL or unreadable sketch or an unknown percentile name.
#[udf]
fn qoe_stats(sketch: &str, percentiles: &str) -> Option<String> {
    qoe_arroyo_udfs::stats_json(sketch, percentiles).ok()
}
