//! The UDF crates as Arroyo reads them: each `udfs/<name>/src/lib.rs` is a UDF definition that
//! Arroyo's API accepts as it is (`POST /api/v1/udfs`, or the pipeline's `udfs`), so it must pass the
//! host's own checks:
//! - exactly one `#[udf]` function, whose signature `arroyo_udf_common::parse::ParsedUdf` (0.2.1, the
//!   parser `arroyo-udf-host` uses) turns into the SQL types `pipeline.sql` calls it with;
//! - at most one dependencies comment, matched the way `arroyo_udf_host::parse_dependencies` does
//!   (the regex `/\*\n(\[dependencies]\n[\s\S]*?)\*/`), parsing as TOML, and naming
//!   `qoe-arroyo-udfs` from this repository by git (Arroyo builds a definition alone, without this
//!   workspace, so a `path` dependency cannot work there);
//! - a `cdylib` crate named after the function, so the locally built library is the one Arroyo builds.

use std::path::{Path, PathBuf};

use arrow::datatypes::DataType;
use arroyo_udf_common::parse::{ParsedUdf, UdfType};

/// The repository the UDF definitions take `qoe-arroyo-udfs` from (`workspace.package.repository`).
const REPOSITORY: &str = "https://github.com/qoe-pipeline/qoe-pipeline";

/// Each UDF: name, argument types as Arroyo maps them, return type, whether it is an aggregate.
fn expected() -> Vec<(&'static str, Vec<DataType>, DataType, bool)> {
    let list_of_f64 = DataType::List(std::sync::Arc::new(arrow::datatypes::Field::new(
        "item",
        DataType::Float64,
        false,
    )));
    vec![
        ("qoe_sketch", vec![list_of_f64], DataType::Utf8, true),
        ("qoe_stats", vec![DataType::Utf8, DataType::Utf8], DataType::Utf8, false),
        ("qoe_es_hist", vec![DataType::Utf8], DataType::Utf8, false),
        ("qoe_json_string", vec![DataType::Utf8], DataType::Utf8, false),
    ]
}

fn udf_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../udfs").join(name)
}

/// The dependencies comment as `arroyo_udf_host::parse_dependencies` finds it: the text from
/// `[dependencies]` to the closing `*/` of a block comment opened by `/*` and a newline.
fn dependency_comments(source: &str) -> Vec<&str> {
    let opener = "/*\n[dependencies]\n";
    source
        .match_indices(opener)
        .filter_map(|(at, _)| {
            let body = &source[at + 3..];
            body.find("*/").map(|end| &body[..end])
        })
        .collect()
}

#[test]
fn every_udf_crate_is_listed() {
    let mut found: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../udfs"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut listed: Vec<String> = expected().iter().map(|(name, ..)| name.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed);
}

#[test]
fn definitions_parse_as_arroyo_parses_them() {
    for (name, args, ret, aggregate) in expected() {
        let source = std::fs::read_to_string(udf_dir(name).join("src/lib.rs")).unwrap();
        let file = syn::parse_file(&source).unwrap_or_else(|error| panic!("{name}: {error}"));
        let functions: Vec<&syn::ItemFn> = file
            .items
            .iter()
            .filter_map(|item| match item {
                syn::Item::Fn(function) => Some(function),
                _ => None,
            })
            .filter(|function| {
                function
                    .attrs
                    .iter()
                    .any(|attr| attr.path().segments.last().is_some_and(|last| last.ident == "udf"))
            })
            .collect();
        assert_eq!(functions.len(), 1, "{name}: exactly one #[udf] function");
        let parsed = ParsedUdf::try_parse(functions[0]).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(parsed.name, name);
        assert_eq!(parsed.udf_type, UdfType::Sync, "{name}");
        let arg_types: Vec<DataType> = parsed.args.iter().map(|arg| arg.data_type.clone()).collect();
        assert_eq!(arg_types, args, "{name}: argument types");
        assert_eq!(parsed.ret_type.data_type, ret, "{name}: return type");
        assert_eq!(parsed.vec_arguments > 0, aggregate, "{name}: aggregate or scalar");
    }
}

#[test]
fn dependency_comments_name_the_shared_crate_by_git() {
    for (name, ..) in expected() {
        let source = std::fs::read_to_string(udf_dir(name).join("src/lib.rs")).unwrap();
        let comments = dependency_comments(&source);
        assert_eq!(comments.len(), 1, "{name}: one dependencies comment");
        let table: toml::Table = toml::from_str(comments[0]).unwrap_or_else(|error| panic!("{name}: {error}"));
        let dependencies = table["dependencies"].as_table().expect("a [dependencies] table");
        assert_eq!(dependencies.len(), 1, "{name}: only qoe-arroyo-udfs");
        let shared = dependencies["qoe-arroyo-udfs"].as_table().expect("a table");
        assert_eq!(shared["git"].as_str(), Some(REPOSITORY), "{name}");
        assert!(!shared.contains_key("path"), "{name}: no path dependency");
    }
}

#[test]
fn crates_are_cdylibs_named_after_their_function() {
    let workspace: toml::Table =
        toml::from_str(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml")).unwrap())
            .unwrap();
    assert_eq!(
        workspace["workspace"]["package"]["repository"].as_str(),
        Some(REPOSITORY)
    );
    for (name, ..) in expected() {
        let manifest: toml::Table =
            toml::from_str(&std::fs::read_to_string(udf_dir(name).join("Cargo.toml")).unwrap()).unwrap();
        assert_eq!(manifest["package"]["name"].as_str(), Some(name));
        let crate_types = manifest["lib"]["crate-type"].as_array().unwrap();
        assert_eq!(crate_types.len(), 1);
        assert_eq!(crate_types[0].as_str(), Some("cdylib"), "{name}");
        assert!(manifest["dependencies"].get("arroyo-udf-plugin").is_some(), "{name}");
    }
}

#[test]
fn the_dependency_matcher_agrees_with_the_host_on_its_test_cases() {
    // arroyo-udf-host's own tests: one comment is read, two are refused, none is an empty table.
    let one = "\n/*\n[dependencies]\nserde = \"1.0\"\n*/\npub fn my_udf() -> i64 { 1 }\n";
    assert_eq!(dependency_comments(one), vec!["[dependencies]\nserde = \"1.0\"\n"]);
    let two = format!("{one}{one}");
    assert_eq!(dependency_comments(&two).len(), 2);
    assert!(dependency_comments("pub fn my_udf() -> i64 { 1 }").is_empty());
}
