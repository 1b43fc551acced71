/*
[dependencies]
qoe-arroyo-udfs = { git = "https://github.com/qoe-pipeline/qoe-pipeline" }
*/
//! Arroyo UDAF `qoe_sketch(DOUBLE) -> TEXT`: the window's values as a serialized `qoe_sketch::Sketch`
//! (relative accuracy 0.5 %), NULL when the window has no non-NULL value. `qoe_stats` and
//! `qoe_es_hist` read it. Arroyo hands a UDAF every value of the window at once.
//!
//! This file is the UDF definition Arroyo compiles: the comment above is its `[dependencies]`
//! (the local build uses `Cargo.toml`'s path dependency instead).

use arroyo_udf_plugin::udf;

/// The sketch of the window's values; NULL without values or for a value the sketch refuses
/// (negative or not finite, which validated beacons never carry).
#[udf]
fn qoe_sketch(values: Vec<f64>) -> Option<String> {
    qoe_arroyo_udfs::sketch_json(&values).ok().flatten()
}
