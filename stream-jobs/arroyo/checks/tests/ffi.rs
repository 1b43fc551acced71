//! The built UDF libraries, called the way Arroyo's worker calls them: `dlopen` the `.so`, look up
//! `__run`, hand it Arrow arrays through the C data interface (`arroyo_udf_common::FfiArrays`, as
//! `arroyo_udf_host::SyncUdfDylib::invoke` and `invoke_udaf` do), and read the Arrow array it returns.
//! Each answer must equal the plain function in `qoe-arroyo-udfs`.
//!
//! The libraries come from `cargo build --release` of the `udfs/*` crates (`test.sh` runs it first),
//! in `$CARGO_TARGET_DIR/release`. Without them these tests pass with a notice, unless
//! `QOE_ARROYO_REQUIRE_UDFS=1` (set by `test.sh`) makes a missing library a failure.

#![allow(unsafe_code)]

use std::path::PathBuf;

use arrow::array::{make_array, Array, ArrayData, Float64Array, StringArray};
use arrow::ffi::from_ffi;
use arroyo_udf_common::{FfiArraySchema, FfiArrays, RunResult};

type Run = unsafe extern "C-unwind" fn(FfiArrays) -> RunResult;

fn library_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release").join(format!("lib{name}.so"))
}

/// The library of UDF `name`, or `None` (with a notice) when it is not built and not required.
fn load(name: &str) -> Option<libloading::Library> {
    let path = library_path(name);
    if !path.exists() {
        let required = std::env::var("QOE_ARROYO_REQUIRE_UDFS").is_ok_and(|value| value == "1");
        assert!(
            !required,
            "{} is missing: build the UDFs first (stream-jobs/arroyo/test.sh)",
            path.display()
        );
        eprintln!("skipped: {} is not built", path.display());
        return None;
    }
    // SAFETY: the library is one of ours, built from this workspace; loading runs no initialiser
    // beyond Rust's own.
    Some(unsafe { libloading::Library::new(&path) }.unwrap_or_else(|error| panic!("{}: {error}", path.display())))
}

/// Calls `__run` of `library` with `args`, as the host does, and returns the result array.
fn run(library: &libloading::Library, args: Vec<ArrayData>) -> ArrayData {
    // SAFETY: `__run` has this signature in every library the `#[udf]` macro of arroyo-udf-plugin
    // 0.2 generates (arroyo_udf_host::UdfDylibInterface declares the same).
    let run: libloading::Symbol<Run> = unsafe { library.get(b"__run") }.expect("symbol __run");
    // SAFETY: the arrays are valid Arrow data; the library takes ownership of them and returns an
    // array exported through the C data interface, which `from_ffi` imports.
    match unsafe { run(FfiArrays::from_vec(args)) } {
        RunResult::Ok(FfiArraySchema(array, schema)) => unsafe { from_ffi(array, &schema) }.unwrap(),
        RunResult::Err => panic!("the udf panicked"),
    }
}

fn strings(data: ArrayData) -> Vec<Option<String>> {
    let array = make_array(data);
    let strings = array.as_any().downcast_ref::<StringArray>().expect("a TEXT result");
    strings.iter().map(|value| value.map(str::to_string)).collect()
}

fn text(values: &[Option<&str>]) -> ArrayData {
    StringArray::from(values.to_vec()).to_data()
}

#[test]
fn qoe_sketch_aggregates_a_window() {
    let Some(library) = load("qoe_sketch") else { return };
    let values = [2500.0, 2600.0, 2700.0, 0.0, 4000.0];
    // NULLs do not reach a Vec<f64> UDAF: the window's values arrive as one array.
    let window = Float64Array::from(vec![
        Some(2500.0),
        None,
        Some(2600.0),
        Some(2700.0),
        Some(0.0),
        Some(4000.0),
    ]);
    let result = strings(run(&library, vec![window.to_data()]));
    assert_eq!(result, vec![qoe_arroyo_udfs::sketch_json(&values).unwrap()]);
    let empty = strings(run(&library, vec![Float64Array::from(Vec::<f64>::new()).to_data()]));
    assert_eq!(empty, vec![None], "an empty window is NULL");
}

#[test]
fn qoe_stats_and_qoe_es_hist_read_sketches() {
    let (Some(stats), Some(hist)) = (load("qoe_stats"), load("qoe_es_hist")) else {
        return;
    };
    let first = qoe_arroyo_udfs::sketch_json(&[800.0, 950.0, 1200.0, 4000.0])
        .unwrap()
        .unwrap();
    let second = qoe_arroyo_udfs::sketch_json(&[40.0]).unwrap().unwrap();
    let sketches = [Some(first.as_str()), None, Some(second.as_str()), Some("not a sketch")];
    let percentiles = [Some("p50,p90,p99"), Some("p50"), Some("p90"), Some("p50")];
    let result = strings(run(&stats, vec![text(&sketches), text(&percentiles)]));
    assert_eq!(
        result,
        vec![
            Some(qoe_arroyo_udfs::stats_json(&first, "p50,p90,p99").unwrap()),
            None,
            Some(qoe_arroyo_udfs::stats_json(&second, "p90").unwrap()),
            None,
        ]
    );
    let result = strings(run(&hist, vec![text(&sketches)]));
    assert_eq!(
        result,
        vec![
            Some(qoe_arroyo_udfs::es_hist_json(&first).unwrap()),
            None,
            Some(qoe_arroyo_udfs::es_hist_json(&second).unwrap()),
            None,
        ]
    );
}

#[test]
fn qoe_json_string_escapes() {
    let Some(library) = load("qoe_json_string") else { return };
    let values = [Some("cdn-a"), Some("say \"hi\"\n"), None];
    let result = strings(run(&library, vec![text(&values)]));
    assert_eq!(
        result,
        vec![
            Some(r#""cdn-a""#.to_string()),
            Some(r#""say \"hi\"\n""#.to_string()),
            None
        ]
    );
}
