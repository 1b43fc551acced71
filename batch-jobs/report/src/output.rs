//! Result tables: Arrow batches with a name, written as `<name>.parquet`, and the small accessors the
//! HTML pages and the closed-form statistics read them with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, StringArray};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::ArrowWriter;

use crate::{ReportError, Result};

/// One result table: written to `<out>/<name>.parquet`.
#[derive(Debug, Clone)]
pub struct OutputTable {
    /// File stem, e.g. `cdn_daily`.
    pub name: &'static str,
    /// The schema (also of an empty table).
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
}

impl OutputTable {
    pub(crate) fn new(name: &'static str, schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        OutputTable { name, schema, batches }
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// All rows in one batch.
    pub fn concat(&self) -> Result<RecordBatch> {
        Ok(concat_batches(&self.schema, &self.batches)?)
    }

    /// A column as `f64`s (null stays null), or an error when it does not exist or is not numeric.
    pub fn f64s(&self, column: &str) -> Result<Vec<Option<f64>>> {
        let batch = self.concat()?;
        let array = column_of(&batch, column)?;
        let array = cast(&array, &DataType::Float64)?;
        let array = array
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("cast to Float64 gives a Float64Array");
        Ok(array.iter().collect())
    }

    /// A column as display strings (null as the empty string).
    pub fn strings(&self, column: &str) -> Result<Vec<String>> {
        let batch = self.concat()?;
        let array = column_of(&batch, column)?;
        if let Ok(array) = cast(&array, &DataType::Utf8) {
            if let Some(strings) = array.as_any().downcast_ref::<StringArray>() {
                return Ok(strings.iter().map(|value| value.unwrap_or("").to_string()).collect());
            }
        }
        let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())?;
        Ok((0..array.len()).map(|row| formatter.value(row).to_string()).collect())
    }

    /// Writes `<dir>/<name>.parquet` (on a blocking thread).
    pub(crate) async fn write(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(format!("{}.parquet", self.name));
        let table = self.clone();
        let target = path.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let file = std::fs::File::create(&target).map_err(|source| ReportError::Io {
                path: target.clone(),
                source,
            })?;
            let mut writer = ArrowWriter::try_new(file, table.schema.clone(), None)?;
            for batch in &table.batches {
                writer.write(batch)?;
            }
            writer.close()?;
            Ok(())
        })
        .await??;
        Ok(path)
    }
}

fn column_of(batch: &RecordBatch, column: &str) -> Result<ArrayRef> {
    let index = batch.schema().index_of(column)?;
    Ok(Arc::clone(batch.column(index)))
}

/// Creates `dir`, writes every table and `report.html`, and returns the written paths.
pub(crate) async fn write_all(dir: &Path, tables: &[&OutputTable], html: String) -> Result<Vec<PathBuf>> {
    tokio::fs::create_dir_all(dir).await.map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for table in tables {
        written.push(table.write(dir).await?);
    }
    let path = dir.join("report.html");
    tokio::fs::write(&path, html).await.map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    written.push(path);
    Ok(written)
}
