//! The warehouse on disk: partition paths, Parquet files, and the commit protocol that makes every flush
//! all-or-nothing.
//!
//! ```text
//! <root>/<table>/dt=YYYY-MM-DD/hour=HH/<source>.<first>-<last>.parquet   beacon tables (play, push, room)
//! <root>/play_sessions/dt=YYYY-MM-DD/hour=HH/<source>.parquet            rewritten as sessions grow
//! <root>/_manifests/<source>/<seq>.json                                 the commit record of a flush
//! <root>/_tmp/<source>/<writer>/                                        files of a flush not yet committed
//! ```
//!
//! A flush of one source (a Kafka partition, or one input file) is committed in four steps:
//! 1. every output file is written and fsynced under `_tmp/<source>/<writer>/`, where no reader looks,
//!    and the directories involved are fsynced;
//! 2. the manifest (offset range, watermark, and the list of `tmp → final` moves) is written there,
//!    fsynced, and hard-linked into `_manifests/<source>/` (a link never replaces an existing manifest,
//!    so a second writer of the source cannot commit the same flush): **this link is the commit point**;
//! 3. the moves are applied (a rename within one file system is atomic) and the directories fsynced;
//! 4. older manifests of the source are removed.
//!
//! [`Warehouse::recover`] runs before a source is read: it re-applies the moves of the latest manifest
//! (a move whose temporary file is gone was applied already) and empties `_tmp/<source>/`, so a crash
//! at any point leaves either the whole flush or none of it, and reading resumes right after the last
//! committed offset.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use qoe_schemas::tables::Table;
use serde::{Deserialize, Serialize};

use crate::BatchError;

/// Milliseconds in an hour.
pub const HOUR_MS: i64 = qoe_schemas::time::HOUR_MS;

/// Rows per Parquet row group: large enough for good compression and few footers, small enough that
/// statistics prune a day of one CDN.
pub(crate) const ROW_GROUP_ROWS: usize = 128 * 1024;

/// One file move of a flush: `tmp` renamed to `path`, or `path` removed when `tmp` is `None` (a
/// `play_sessions` file left empty because its sessions moved to an earlier hour).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    /// Temporary file, relative to the root.
    pub tmp: Option<String>,
    /// Final file, relative to the root.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
}

/// The commit record of one flush of one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The source: `p<partition>` for Kafka, `f-<name>` for an input file.
    pub source: String,
    /// Flush number of the source, from 1.
    pub seq: u64,
    /// First offset the flush covers.
    pub first_offset: i64,
    /// Last offset the flush covers (accepted, duplicate or rejected).
    pub last_offset: i64,
    /// Largest event time seen up to `last_offset`, epoch ms.
    pub watermark_ms: i64,
    /// The file moves.
    pub moves: Vec<Move>,
    /// For an input file: a hash of its first line, so that another file of the same name is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// A warehouse rooted at a local directory.
#[derive(Debug, Clone)]
pub struct Warehouse {
    root: PathBuf,
}

fn io_error(operation: &'static str, path: &Path, error: io::Error) -> BatchError {
    BatchError::io(operation, path, error)
}

impl Warehouse {
    /// Opens (and creates) a warehouse directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BatchError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|error| io_error("creating the warehouse directory", &root, error))?;
        Ok(Warehouse { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The partition directory of a table for the hour that contains `time_ms`, relative to the root.
    pub fn partition(table: Table, time_ms: i64) -> String {
        let (date, hour) = date_hour(time_ms);
        format!("{}/dt={date}/hour={hour:02}", table.name())
    }

    /// The name of a beacon-table file of a flush.
    pub fn data_file_name(source: &str, first_offset: i64, last_offset: i64) -> String {
        format!("{source}.{first_offset}-{last_offset}.parquet")
    }

    /// The name of a source's `play_sessions` file in one hour.
    pub fn sessions_file_name(source: &str) -> String {
        format!("{source}.parquet")
    }

    /// The directory for a source's uncommitted files.
    pub fn tmp_dir(&self, source: &str) -> PathBuf {
        self.root.join("_tmp").join(source)
    }

    fn manifest_dir(&self, source: &str) -> PathBuf {
        self.root.join("_manifests").join(source)
    }

    /// The committed manifests of a source, oldest first.
    fn manifests(&self, source: &str) -> Result<Vec<PathBuf>, BatchError> {
        let dir = self.manifest_dir(source);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_error("listing", &dir, error)),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry.map_err(|error| io_error("listing", &dir, error))?.path();
            if path.extension().is_some_and(|extension| extension == "json") {
                paths.push(path);
            }
        }
        // Names are zero-padded flush numbers, so the lexical order is the commit order.
        paths.sort();
        Ok(paths)
    }

    /// Finishes the source's last commit if a crash interrupted it, discards uncommitted files, and
    /// returns the last manifest (`None` for a source never committed).
    pub fn recover(&self, source: &str) -> Result<Option<Manifest>, BatchError> {
        let manifests = self.manifests(source)?;
        let latest = match manifests.last() {
            Some(path) => {
                let text = fs::read_to_string(path).map_err(|error| io_error("reading", path, error))?;
                let manifest: Manifest = serde_json::from_str(&text).map_err(|source| BatchError::ManifestJson {
                    operation: "reading",
                    path: path.clone(),
                    source,
                })?;
                self.apply(&manifest)?;
                Some(manifest)
            }
            None => None,
        };
        let tmp_dir = self.tmp_dir(source);
        match fs::remove_dir_all(&tmp_dir) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error("removing", &tmp_dir, error)),
        }
        if let Some((_, older)) = manifests.split_last() {
            for path in older {
                fs::remove_file(path).map_err(|error| io_error("removing", path, error))?;
            }
        }
        Ok(latest)
    }

    /// Applies a committed manifest's moves; idempotent.
    pub fn apply(&self, manifest: &Manifest) -> Result<(), BatchError> {
        let mut touched_dirs: Vec<PathBuf> = Vec::new();
        for file_move in &manifest.moves {
            let dir = self.apply_move(manifest, file_move)?;
            if !touched_dirs.contains(&dir) {
                touched_dirs.push(dir);
            }
        }
        for dir in touched_dirs {
            sync_dir(&dir)?;
        }
        Ok(())
    }

    /// Applies one move of a committed manifest and fsyncs its directory; idempotent.
    pub fn apply_one(&self, manifest: &Manifest, file_move: &Move) -> Result<(), BatchError> {
        let dir = self.apply_move(manifest, file_move)?;
        sync_dir(&dir)
    }

    /// Renames (or removes) one file of a committed manifest; returns the directory it changed.
    fn apply_move(&self, manifest: &Manifest, file_move: &Move) -> Result<PathBuf, BatchError> {
        let path = self.root.join(&file_move.path);
        let dir = path.parent().map_or_else(|| self.root.clone(), Path::to_path_buf);
        let Some(tmp) = &file_move.tmp else {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(io_error("removing", &path, error)),
            }
            return Ok(dir);
        };
        let tmp = self.root.join(tmp);
        if tmp.exists() {
            fs::rename(&tmp, &path).map_err(|error| io_error("renaming into place", &path, error))?;
            return Ok(dir);
        }
        // Applied already, unless the final file is missing too: then the commit lost its data (files
        // removed by hand, or a file system that dropped them).
        if !path.exists() {
            return Err(BatchError::Manifest {
                path: format!("_manifests/{}/{:012}.json", manifest.source, manifest.seq),
                problem: format!(
                    "move to {:?}: neither the temporary nor the final file exists",
                    file_move.path
                ),
            });
        }
        Ok(dir)
    }

    /// Makes a flush's files durable before its commit: creates the partition directories of its moves
    /// and fsyncs them, their parents, and the temporary directory `tmp_dir`.
    pub fn prepare(&self, manifest: &Manifest, tmp_dir: &Path) -> Result<(), BatchError> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for file_move in &manifest.moves {
            let Some(dir) = self.root.join(&file_move.path).parent().map(Path::to_path_buf) else {
                continue;
            };
            if dirs.contains(&dir) {
                continue;
            }
            fs::create_dir_all(&dir).map_err(|error| io_error("creating", &dir, error))?;
            dirs.push(dir);
        }
        // A new partition directory is durable once its parents are synced too.
        let mut to_sync: Vec<PathBuf> = Vec::new();
        for dir in dirs {
            let mut current = Some(dir.as_path());
            while let Some(path) = current {
                if !path.starts_with(&self.root) {
                    break;
                }
                if !to_sync.iter().any(|known| known == path) {
                    to_sync.push(path.to_path_buf());
                }
                current = path.parent();
            }
        }
        if tmp_dir.exists() {
            to_sync.push(tmp_dir.to_path_buf());
        }
        for dir in to_sync {
            sync_dir(&dir)?;
        }
        Ok(())
    }

    /// Writes the manifest and links it into place: the commit point of a flush. Fails with
    /// [`BatchError::LostOwnership`] when another writer committed the same flush number first.
    pub fn commit(&self, manifest: &Manifest, tmp_dir: &Path) -> Result<(), BatchError> {
        let tmp = tmp_dir.join("manifest.json");
        let text = serde_json::to_vec_pretty(manifest).map_err(|source| BatchError::ManifestJson {
            operation: "encoding",
            path: tmp.clone(),
            source,
        })?;
        write_synced(&tmp, &text)?;
        let dir = self.manifest_dir(&manifest.source);
        fs::create_dir_all(&dir).map_err(|error| io_error("creating", &dir, error))?;
        let path = dir.join(format!("{:012}.json", manifest.seq));
        // A hard link never replaces an existing file, unlike a rename: two writers of one source (a
        // consumer that lost its partition without noticing) cannot both commit flush N.
        match fs::hard_link(&tmp, &path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                return Err(BatchError::LostOwnership {
                    source_id: manifest.source.clone(),
                    seq: manifest.seq,
                })
            }
            Err(error) => return Err(io_error("linking the manifest into place", &path, error)),
        }
        fs::remove_file(&tmp).map_err(|error| io_error("removing", &tmp, error))?;
        sync_dir(&dir)
    }

    /// Removes the manifests of a source older than `keep_seq`.
    pub fn prune_manifests(&self, source: &str, keep_seq: u64) -> Result<(), BatchError> {
        let keep = format!("{keep_seq:012}.json");
        for path in self.manifests(source)? {
            if path.file_name().is_some_and(|name| *name.to_string_lossy() < *keep) {
                fs::remove_file(&path).map_err(|error| io_error("removing", &path, error))?;
            }
        }
        Ok(())
    }

    /// The files of a table whose partition hour is at or after `from_ms` and whose name satisfies
    /// `wanted`. Hidden and temporary files are never listed.
    pub fn files_since(
        &self,
        table: Table,
        from_ms: i64,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Vec<PathBuf>, BatchError> {
        let from_hour = from_ms.div_euclid(HOUR_MS).saturating_mul(HOUR_MS);
        let table_dir = self.root.join(table.name());
        let mut files = Vec::new();
        for date_dir in list_dir(&table_dir)? {
            let Some(date) = dir_value(&date_dir, "dt=") else {
                continue;
            };
            let Some(day_ms) = parse_date(&date) else { continue };
            if day_ms.saturating_add(24 * HOUR_MS) <= from_hour {
                continue;
            }
            for hour_dir in list_dir(&date_dir)? {
                let Some(hour) = dir_value(&hour_dir, "hour=").and_then(|hour| hour.parse::<i64>().ok()) else {
                    continue;
                };
                if day_ms + hour * HOUR_MS < from_hour {
                    continue;
                }
                for file in list_dir(&hour_dir)? {
                    let name = file
                        .file_name()
                        .map(|name| name.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if !name.starts_with('.') && name.ends_with(".parquet") && wanted(&name) {
                        files.push(file);
                    }
                }
            }
        }
        files.sort();
        Ok(files)
    }
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, BatchError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error("listing", dir, error)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(entry.map_err(|error| io_error("listing", dir, error))?.path());
    }
    paths.sort();
    Ok(paths)
}

fn dir_value(path: &Path, prefix: &str) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix(prefix).map(str::to_string)
}

/// Writes a file and fsyncs it.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BatchError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|error| io_error("creating", dir, error))?;
    }
    fs::write(path, bytes).map_err(|error| io_error("writing", path, error))?;
    File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|error| io_error("syncing", path, error))
}

fn sync_dir(dir: &Path) -> Result<(), BatchError> {
    File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(|error| io_error("syncing directory", dir, error))
}

/// Encodes one record batch as the bytes of a warehouse file (`writer_properties`) with one
/// `ArrowWriter`; no IO. The job writes its files column by column on every core instead, with the
/// same bytes (`src/encode.rs`, whose tests hold it to this function).
pub fn encode_parquet(table: Table, batch: &RecordBatch) -> Result<Vec<u8>, BatchError> {
    let schema = batch.schema();
    let properties = writer_properties(table, &schema, ROW_GROUP_ROWS)?;
    let encoding = |source| BatchError::Parquet {
        context: format!("encoding a {} file", table.name()),
        source,
    };
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(properties)).map_err(encoding)?;
    writer.write(batch).map_err(encoding)?;
    writer.into_inner().map_err(encoding)
}

/// How every warehouse file is written: zstd level 3, page statistics, row groups of at most
/// `row_group_rows` rows ([`ROW_GROUP_ROWS`] but in tests), and the table's sort key declared.
pub(crate) fn writer_properties(
    table: Table,
    schema: &Schema,
    row_group_rows: usize,
) -> Result<WriterProperties, BatchError> {
    let sorting: Vec<SortingColumn> = table
        .sort_key()
        .iter()
        .filter_map(|name| schema.index_of(name).ok())
        .map(|index| SortingColumn {
            column_idx: i32::try_from(index).unwrap_or_default(),
            descending: false,
            nulls_first: true,
        })
        .collect();
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(|source| {
            BatchError::Parquet {
                context: "zstd compression level 3".to_string(),
                source,
            }
        })?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_sorting_columns(Some(sorting))
        .build())
}

/// Reads the named columns of a Parquet file (all columns when `columns` is empty).
pub fn read_parquet(path: &Path, columns: &[&str]) -> Result<Vec<RecordBatch>, BatchError> {
    let file = File::open(path).map_err(|error| io_error("opening", path, error))?;
    let reading = |source| BatchError::Parquet {
        context: format!("reading {path:?}"),
        source,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(reading)?;
    let builder = if columns.is_empty() {
        builder
    } else {
        let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
        builder.with_projection(mask)
    };
    let reader = builder.build().map_err(reading)?;
    let mut batches = Vec::new();
    for batch in reader {
        batches.push(batch.map_err(|source| BatchError::Arrow {
            context: format!("reading {path:?}"),
            source,
        })?);
    }
    Ok(batches)
}

pub use qoe_schemas::time::{date_hour, parse_date};
