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

use crate::{Context, ReportError, Result};

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
        concat_batches(&self.schema, &self.batches).with_context(|| format!("concatenating table {:?}", self.name))
    }

    /// A column as `f64`s (null stays null), or an error when it does not exist or is not numeric.
    pub fn f64s(&self, column: &str) -> Result<Vec<Option<f64>>> {
        let batch = self.concat()?;
        let array = self.column_of(&batch, column)?;
        let array = cast(&array, &DataType::Float64)
            .with_context(|| format!("reading column {column:?} of table {:?} as numbers", self.name))?;
        let array = array
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("cast to Float64 gives a Float64Array");
        Ok(array.iter().collect())
    }

    /// A column as display strings (null as the empty string).
    pub fn strings(&self, column: &str) -> Result<Vec<String>> {
        let batch = self.concat()?;
        let array = self.column_of(&batch, column)?;
        if let Ok(array) = cast(&array, &DataType::Utf8) {
            if let Some(strings) = array.as_any().downcast_ref::<StringArray>() {
                return Ok(strings.iter().map(|value| value.unwrap_or("").to_string()).collect());
            }
        }
        let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())
            .with_context(|| format!("formatting column {column:?} of table {:?}", self.name))?;
        Ok((0..array.len()).map(|row| formatter.value(row).to_string()).collect())
    }

    /// Writes `<dir>/<name>.parquet` (on a blocking thread).
    pub(crate) async fn write(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(format!("{}.parquet", self.name));
        let table = self.clone();
        let target = path.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let file = std::fs::File::create(&target).map_err(|source| ReportError::Io {
                operation: "creating",
                path: target.clone(),
                source,
            })?;
            let writing = |source| ReportError::Parquet {
                path: target.clone(),
                source,
            };
            let mut writer = ArrowWriter::try_new(file, table.schema.clone(), None).map_err(writing)?;
            for batch in &table.batches {
                writer.write(batch).map_err(writing)?;
            }
            writer.close().map_err(writing)?;
            Ok(())
        })
        .await
        .map_err(|source| ReportError::Task {
            path: path.clone(),
            source,
        })??;
        Ok(path)
    }

    fn column_of(&self, batch: &RecordBatch, column: &str) -> Result<ArrayRef> {
        let index = batch
            .schema()
            .index_of(column)
            .with_context(|| format!("column {column:?} of table {:?}", self.name))?;
        Ok(Arc::clone(batch.column(index)))
    }
}

/// Creates `dir`, writes every table and `report.html`, and returns the written paths.
pub(crate) async fn write_all(dir: &Path, tables: &[&OutputTable], html: String) -> Result<Vec<PathBuf>> {
    tokio::fs::create_dir_all(dir).await.map_err(|source| ReportError::Io {
        operation: "creating",
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for table in tables {
        written.push(table.write(dir).await?);
    }
    let path = dir.join("report.html");
    tokio::fs::write(&path, html).await.map_err(|source| ReportError::Io {
        operation: "writing",
        path: path.clone(),
        source,
    })?;
    written.push(path);
    Ok(written)
}
