/*
[dependencies]
qoe-arroyo-udfs = { git = "https://github.com/qoe-pipeline/qoe-pipeline" }
*/
//! Arroyo UDF `qoe_json_string(TEXT) -> TEXT`: a JSON string literal, quoted and escaped, so that
//! `pipeline.sql` can splice dimension values (free text, control characters allowed by the beacon
//! contract) into the rollup document it builds as text.
//!
//! This file is the UDF definition Arroyo compiles: the comment above is its `[dependencies]`
//! (the local build uses `Cargo.toml`'s path dependency instead).

use arroyo_udf_plugin::udf;

/// `text` as a JSON string literal (NULL in, NULL out).
#[udf]
fn qoe_json_string(text: &str) -> String {
    qoe_arroyo_udfs::json_string(text)
}
