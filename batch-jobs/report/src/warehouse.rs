//! Opening the warehouse: one DataFusion `ListingTable` per table with the `dt`/`hour` Hive partition
//! columns, skipping in-progress files, and an empty table when a table directory is missing.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use qoe_schemas::tables::{self, Table};

use crate::{Context, ReportError, Result};

/// Parses a `YYYY-MM-DD` flag value; `flag` names the flag in the error.
pub fn parse_date(flag: &'static str, value: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d").map_err(|_| ReportError::BadDate {
        flag,
        value: value.to_string(),
    })
}

/// Checks `from <= to`.
pub(crate) fn check_range(from: NaiveDate, to: NaiveDate) -> Result<()> {
    if from > to {
        return Err(ReportError::BadArgument {
            flag: "--from",
            value: from.to_string(),
            reason: format!("after --to {to}"),
        });
    }
    Ok(())
}

/// A SQL string literal.
pub(crate) fn lit(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A date as a SQL string literal comparable with the `dt` partition column.
pub(crate) fn day_lit(day: NaiveDate) -> String {
    format!("'{}'", day.format("%Y-%m-%d"))
}

/// An aggregate expression: the exact continuous `q`-quantile of the non-null values of `expr`
/// ([`crate::quantile`], the same numbers as DuckDB's `quantile_cont`); null without values.
pub(crate) fn percentile(q: f64, expr: &str) -> String {
    format!("qoe_quantile_cont(CAST({expr} AS DOUBLE), CAST({q} AS DOUBLE))")
}

/// The schema of a table as registered: the file columns plus `dt` and `hour` (strings).
fn registered_schema(table: Table) -> SchemaRef {
    let mut fields: Vec<Field> = tables::schema(table)
        .fields()
        .iter()
        .map(|field| field.as_ref().clone())
        .collect();
    fields.push(Field::new("dt", DataType::Utf8, false));
    fields.push(Field::new("hour", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// A session with the warehouse tables registered as `play`, `push`, `room` and `play_sessions`.
/// Returns the context and the names of the tables whose directory is missing.
pub(crate) async fn open(warehouse: &Path) -> Result<(SessionContext, Vec<&'static str>)> {
    let is_dir = tokio::fs::metadata(warehouse)
        .await
        .map(|meta| meta.is_dir())
        .unwrap_or(false);
    if !is_dir {
        return Err(ReportError::NoWarehouse(warehouse.to_path_buf()));
    }
    // Four target partitions even on 2 cores: a partition waits for file reads (object_store runs
    // them on blocking threads) as much as it decodes, and the 30-day CDN report of
    // scripts/bench-batch.sh was faster at 4 than at 2 (BENCHMARKS.md). File statistics are not collected at
    // planning: the warehouse holds thousands of small hourly files, the queries prune by the
    // `dt`/`hour` partition columns, and reading every footer up front took longer than the query
    // (row groups are still pruned by their statistics when a file is read).
    let config = SessionConfig::new()
        .with_target_partitions(4)
        .with_collect_statistics(false)
        .with_information_schema(false);
    let ctx = SessionContext::new_with_config(config);
    ctx.register_udaf(crate::quantile::quantile_cont());
    let mut missing = Vec::new();
    for table in Table::ALL {
        let dir = warehouse.join(table.name());
        let exists = tokio::fs::metadata(&dir)
            .await
            .map(|meta| meta.is_dir())
            .unwrap_or(false);
        if !exists {
            missing.push(table.name());
            let registering = || format!("registering table {:?}", table.name());
            let empty = MemTable::try_new(registered_schema(table), vec![vec![]]).with_context(registering)?;
            ctx.register_table(table.name(), Arc::new(empty))
                .with_context(registering)?;
            continue;
        }
        let dir = std::path::absolute(&dir).map_err(|source| ReportError::Io {
            operation: "resolving",
            path: dir.clone(),
            source,
        })?;
        // The glob applies to the file name (segments holding `=` are partition directories):
        // names starting with `.` are files being written.
        let listing = || format!("listing {dir:?}");
        let url = ListingTableUrl::parse(format!("{}/", dir.display()))
            .and_then(|url| url.with_glob("[!.]*"))
            .with_context(listing)?;
        // Files are hourly and small (tens of KB): their page indexes cost more to read than they
        // save, and DataFusion's default footer read of the last 512 KiB allocated (and zeroed) far
        // more than a file holds; 16 KiB gets the footer in one read, and was about 10 % faster
        // over the 30-day report (BENCHMARKS.md).
        let mut parquet = datafusion::config::TableParquetOptions::default();
        parquet.global.enable_page_index = false;
        parquet.global.metadata_size_hint = Some(16 * 1024);
        let options = ListingOptions::new(Arc::new(ParquetFormat::default().with_options(parquet)))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![
                ("dt".to_string(), DataType::Utf8),
                ("hour".to_string(), DataType::Utf8),
            ]);
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(tables::schema(table));
        let registering = || format!("registering table {:?}", table.name());
        let listing_table = ListingTable::try_new(config).with_context(registering)?;
        ctx.register_table(table.name(), Arc::new(listing_table))
            .with_context(registering)?;
    }
    Ok((ctx, missing))
}

/// Runs one SQL statement, the query `name` in errors, and collects its batches (empty batches
/// dropped).
pub(crate) async fn query(ctx: &SessionContext, name: &str, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    tracing::debug!(name, sql, "report query");
    let frame = ctx
        .sql(sql)
        .await
        .with_context(|| format!("planning the {name} query"))?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame
        .collect()
        .await
        .with_context(|| format!("running the {name} query"))?;
    let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
    // The executed plan's batches are authoritative (the logical schema may name a narrower type).
    let schema = batches.first().map(RecordBatch::schema).unwrap_or(schema);
    Ok((schema, batches))
}
