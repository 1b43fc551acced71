/*
[dependencies]
qoe-arroyo-udfs = { git = "https://github.com/qoe-pipeline/qoe-pipeline" }
*/
//! Arroyo UDF `qoe_es_hist(TEXT) -> TEXT`: the buckets of a sketch made by `qoe_sketch` in
//! Elasticsearch's `histogram` field format, `{"values":[..],"counts":[..]}`, as the embedded engine
//! writes `<metric>_hist`.
//!
//! This file is the UDF definition Arroyo compiles: the comment above is its `[dependencies]`
//! (the local build uses `Cargo.toml`'s path dependency instead).

use arroyo_udf_plugin::udf;

/// The histogram as JSON text; NULL for a NULL or unreadable sketch.
#[udf]
fn qoe_es_hist(sketch: &str) -> Option<String> {
    qoe_arroyo_udfs::es_hist_json(sketch).ok()
}
