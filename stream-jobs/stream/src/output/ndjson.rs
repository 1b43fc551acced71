//! `ndjson:DIR`: rollup documents as NDJSON files, synced before a write returns.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use qoe_rollup::Emission;

use crate::error::StreamError;
use crate::output::Output;

/// `ndjson:DIR`: the documents as NDJSON, one file per UTC day of the window start
/// (`DIR/rollups-v1-YYYY-MM-DD.ndjson`), appended, and synced to disk before `write` returns.
///
/// Early results, and final results written again after a restart, are appended too: a reader keeps
/// the last line of each document id ([`qoe_rollup::RollupDoc::id`]), as Elasticsearch keeps the last
/// version of each `_id`.
pub struct NdjsonOutput {
    dir: PathBuf,
    files: BTreeMap<String, BufWriter<File>>,
}

impl NdjsonOutput {
    /// Creates `dir` if needed.
    pub fn new(dir: &Path) -> Result<Self, StreamError> {
        std::fs::create_dir_all(dir).map_err(|error| StreamError::io(dir, error))?;
        Ok(NdjsonOutput {
            dir: dir.to_path_buf(),
            files: BTreeMap::new(),
        })
    }

    /// The file of the window starting at `window_start_ms`.
    pub fn file_name(window_start_ms: i64) -> String {
        let (date, _) = qoe_schemas::time::date_hour(window_start_ms);
        format!("rollups-v1-{date}.ndjson")
    }
}

impl Output for NdjsonOutput {
    fn name(&self) -> String {
        format!("ndjson:{}", self.dir.display())
    }

    fn write(&mut self, emissions: &[Emission]) -> Result<(), StreamError> {
        let mut touched = Vec::new();
        for emission in emissions {
            let name = NdjsonOutput::file_name(emission.window_start_ms);
            let path = self.dir.join(&name);
            if !self.files.contains_key(&name) {
                drop_torn_tail(&path).map_err(|error| StreamError::io(&path, error))?;
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|error| StreamError::io(&path, error))?;
                self.files.insert(name.clone(), BufWriter::with_capacity(1 << 16, file));
            }
            let Some(writer) = self.files.get_mut(&name) else {
                continue;
            };
            for doc in &emission.docs {
                serde_json::to_writer(&mut *writer, doc).map_err(|error| StreamError::io(&path, error.into()))?;
                writer.write_all(b"\n").map_err(|error| StreamError::io(&path, error))?;
            }
            if !touched.contains(&name) {
                touched.push(name);
            }
        }
        for name in touched {
            let path = self.dir.join(&name);
            let Some(writer) = self.files.get_mut(&name) else {
                continue;
            };
            writer.flush().map_err(|error| StreamError::io(&path, error))?;
            writer
                .get_ref()
                .sync_data()
                .map_err(|error| StreamError::io(&path, error))?;
        }
        // Windows close in order: keep only the newest few days' files open.
        while self.files.len() > 2 {
            self.files.pop_first();
        }
        Ok(())
    }
}

/// Cuts a line left without its newline by a process killed while writing (that write was never
/// acknowledged, so its documents are written again), so that appending starts on a line of its own.
fn drop_torn_tail(path: &Path) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    let length = file.metadata()?.len();
    let mut end = length;
    let mut block = vec![0u8; 1 << 16];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let size = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block[..size])?;
        if let Some(position) = block[..size].iter().rposition(|byte| *byte == b'\n') {
            end = start + position as u64 + 1;
            break;
        }
        end = start;
    }
    if end < length {
        tracing::warn!(path = %path.display(), bytes = length - end, "dropping a line torn by an earlier crash");
        file.set_len(end)?;
        file.sync_all()?;
    }
    Ok(())
}

/// Reads the documents of an `ndjson:` output directory, keeping the last line of each id, in id
/// order: what Elasticsearch would hold after the same writes.
pub fn read_ndjson_dir(dir: &Path) -> Result<BTreeMap<String, qoe_rollup::RollupDoc>, StreamError> {
    let mut docs = BTreeMap::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|error| StreamError::io(dir, error))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "ndjson"))
        .collect();
    names.sort();
    for path in names {
        let text = std::fs::read_to_string(&path).map_err(|error| StreamError::io(&path, error))?;
        for (number, line) in text.lines().enumerate() {
            let doc: qoe_rollup::RollupDoc = serde_json::from_str(line).map_err(|error| StreamError::Document {
                path: path.display().to_string(),
                line: number + 1,
                error,
            })?;
            docs.insert(doc.id(), doc);
        }
    }
    Ok(docs)
}
