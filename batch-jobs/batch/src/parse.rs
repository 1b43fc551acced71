//! Input lines parsed on worker threads, straight into columns.
//!
//! The file reader cuts the input into blocks of lines ([`RawBlock`], [`read_blocks`]); worker threads
//! ([`parse_blocks`]) parse and validate each block's records as the collector does
//! ([`crate::keys::parse_payload`]) and append every valid beacon to the block's column buffers, one per
//! (table, event hour) ([`ParsedBlock`]). The job then decides on one thread, in offset order, which
//! records it accepts (resume point, duplicates, session rows) and keeps only those rows of the
//! block's batches. Parsing and appending, the costly part of ingest, run on every core; the job's
//! thread only decides.
//!
//! Blocks carry a sequence number: workers finish them in any order, and the job takes them in
//! sequence, so records are offered in offset order whatever the number of workers.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use qoe_schemas::tables::Table;
use qoe_schemas::{Beacon, FieldError};

use crate::columns::{TableBuffer, INITIAL_ROWS};
use crate::keys::{parse_payload, partition_of, Keys};
use crate::BatchError;

/// Lines per block handed to a worker: large enough that a block's few column buffers fill well,
/// small enough that the workers share a file evenly.
pub(crate) const BLOCK_LINES: usize = 4096;

/// One line of a block, as the reader saw it.
#[derive(Debug)]
pub(crate) enum RawLine {
    /// Before the resume point: not parsed.
    Stored,
    /// A record, `start..end` of the block's data (trimmed, not blank).
    Text { offset: i64, start: usize, end: usize },
    /// The last line has no newline yet.
    Incomplete,
}

/// Lines of the input, unparsed.
#[derive(Debug, Default)]
pub(crate) struct RawBlock {
    seq: u64,
    data: Vec<u8>,
    lines: Vec<RawLine>,
}

/// A valid beacon of a parsed block, and where its row is in the block's batches.
#[derive(Debug)]
pub(crate) struct Placed {
    pub(crate) beacon: Beacon,
    /// Index into [`ParsedBlock::batches`].
    pub(crate) slot: usize,
    /// Row in that batch.
    pub(crate) row: u32,
    /// The beacon's keys in the job's maps.
    pub(crate) keys: Keys,
}

/// One line of a parsed block.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "almost every line is a record: boxing it would cost an allocation per beacon"
)]
pub(crate) enum BlockLine {
    /// Before the resume point: not parsed.
    Stored,
    /// A record at its offset: a placed beacon or why it is invalid.
    Record(i64, Result<Placed, FieldError>),
    /// The last line has no newline yet.
    Incomplete,
}

/// A block's lines, parsed, and every valid beacon of it as rows of one batch per (table, event hour).
#[derive(Debug)]
pub(crate) struct ParsedBlock {
    pub(crate) seq: u64,
    pub(crate) lines: Vec<BlockLine>,
    pub(crate) batches: Vec<((Table, i64), RecordBatch)>,
}

/// Reads lines from offset 0 on and sends them in blocks of [`BLOCK_LINES`]; lines before `next` are
/// sent as [`RawLine::Stored`], unparsed. Stops at the end of the file, at a last line without its
/// newline (possibly still being written: it is left, with its offset, for the next run), or when the
/// workers are gone.
pub(crate) fn read_blocks(
    mut reader: BufReader<File>,
    next: i64,
    sender: &SyncSender<RawBlock>,
) -> std::io::Result<()> {
    let mut block = RawBlock::default();
    let mut offset: i64 = 0;
    loop {
        let start = block.data.len();
        if reader.read_until(b'\n', &mut block.data)? == 0 {
            break;
        }
        if !block.data.ends_with(b"\n") {
            block.data.truncate(start);
            block.lines.push(RawLine::Incomplete);
            break;
        }
        let this = offset;
        offset += 1;
        if this < next {
            block.data.truncate(start);
            block.lines.push(RawLine::Stored);
        } else {
            let line = &block.data[start..];
            let leading = line.len() - line.trim_ascii_start().len();
            let trailing = line.len() - line.trim_ascii_end().len();
            if leading == line.len() {
                block.data.truncate(start);
            } else {
                let (start, end) = (start + leading, block.data.len() - trailing);
                block.lines.push(RawLine::Text {
                    offset: this,
                    start,
                    end,
                });
            }
        }
        if block.lines.len() >= BLOCK_LINES {
            let seq = block.seq + 1;
            let full = std::mem::replace(
                &mut block,
                RawBlock {
                    seq,
                    ..RawBlock::default()
                },
            );
            if sender.send(full).is_err() {
                return Ok(());
            }
        }
    }
    let _ = sender.send(block);
    Ok(())
}

/// Parses one block: every record validated, every valid beacon appended to its partition's buffer.
pub(crate) fn parse_block(raw: RawBlock) -> Result<ParsedBlock, ArrowError> {
    let mut buffers: Vec<((Table, i64), TableBuffer)> = Vec::new();
    let mut slots: BTreeMap<(Table, i64), usize> = BTreeMap::new();
    let mut lines = Vec::with_capacity(raw.lines.len());
    let total = raw.lines.len();
    for (index, line) in raw.lines.into_iter().enumerate() {
        let (offset, start, end) = match line {
            RawLine::Stored => {
                lines.push(BlockLine::Stored);
                continue;
            }
            RawLine::Incomplete => {
                lines.push(BlockLine::Incomplete);
                continue;
            }
            RawLine::Text { offset, start, end } => (offset, start, end),
        };
        let beacon = match parse_payload(&raw.data[start..end]) {
            Ok(beacon) => beacon,
            Err(error) => {
                lines.push(BlockLine::Record(offset, Err(error)));
                continue;
            }
        };
        let key = partition_of(&beacon);
        let slot = match slots.get(&key) {
            Some(slot) => *slot,
            None => {
                // The block's first partition is usually most of it; late beacons start small.
                let capacity = if buffers.is_empty() {
                    total - index
                } else {
                    INITIAL_ROWS
                };
                buffers.push((key, TableBuffer::with_capacity(key.0, capacity)?));
                slots.insert(key, buffers.len() - 1);
                buffers.len() - 1
            }
        };
        let buffer = &mut buffers[slot].1;
        let row = u32::try_from(buffer.rows())
            .map_err(|_| ArrowError::ComputeError("a block's rows do not fit one batch".to_string()))?;
        buffer.push(&beacon)?;
        let keys = Keys::of(&beacon);
        lines.push(BlockLine::Record(
            offset,
            Ok(Placed {
                beacon,
                slot,
                row,
                keys,
            }),
        ));
    }
    let batches = buffers
        .into_iter()
        .map(|(key, buffer)| Ok((key, buffer.finish()?)))
        .collect::<Result<_, ArrowError>>()?;
    Ok(ParsedBlock {
        seq: raw.seq,
        lines,
        batches,
    })
}

/// A worker: parses blocks until the reader is done or the job stopped taking them, and stops at the
/// first failure after sending it (a panic while parsing is sent as an error too, so the job stops at
/// once rather than waiting for a block that never comes). Blocks the job is done with come back
/// through `spent` and a worker frees their beacons, which keeps the job's thread for deciding.
pub(crate) fn parse_blocks(
    input: Arc<Mutex<Receiver<RawBlock>>>,
    spent: Arc<Mutex<Receiver<Vec<BlockLine>>>>,
    output: &SyncSender<Result<ParsedBlock, BatchError>>,
) {
    loop {
        loop {
            let lines = spent.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).try_recv();
            let Ok(lines) = lines else { break };
            drop(lines);
        }
        let next = input.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv();
        let Ok(raw) = next else { return };
        let first_offset = raw.lines.iter().find_map(|line| match line {
            RawLine::Text { offset, .. } => Some(*offset),
            _ => None,
        });
        let parsed = match std::panic::catch_unwind(AssertUnwindSafe(|| parse_block(raw))) {
            Ok(Ok(parsed)) => Ok(parsed),
            Ok(Err(source)) => Err(BatchError::Arrow {
                context: format!(
                    "building the columns of the lines from offset {}",
                    first_offset.unwrap_or_default()
                ),
                source,
            }),
            Err(_) => Err(BatchError::Join("a parsing thread panicked".to_string())),
        };
        let failed = parsed.is_err();
        if output.send(parsed).is_err() || failed {
            return;
        }
    }
}

/// Hands out parsed blocks in sequence, whatever order the workers finished them in.
#[derive(Debug, Default)]
pub(crate) struct InSequence {
    next: u64,
    waiting: BTreeMap<u64, ParsedBlock>,
}

impl InSequence {
    /// Takes a finished block; returns the blocks now due, in sequence.
    pub(crate) fn push(&mut self, block: ParsedBlock) -> Vec<ParsedBlock> {
        self.waiting.insert(block.seq, block);
        let mut due = Vec::new();
        while let Some(block) = self.waiting.remove(&self.next) {
            self.next += 1;
            due.push(block);
        }
        due
    }

    /// Blocks finished but not handed out (a block before them is missing).
    pub(crate) fn stranded(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(seq: u64) -> ParsedBlock {
        ParsedBlock {
            seq,
            lines: Vec::new(),
            batches: Vec::new(),
        }
    }

    #[test]
    fn blocks_come_out_in_sequence_whatever_order_they_finish_in() {
        let mut order = InSequence::default();
        assert!(order.push(block(1)).is_empty());
        assert!(order.push(block(2)).is_empty());
        let due: Vec<u64> = order.push(block(0)).iter().map(|block| block.seq).collect();
        assert_eq!(due, [0, 1, 2]);
        assert!(order.push(block(4)).is_empty());
        assert_eq!(order.stranded(), 1);
        let due: Vec<u64> = order.push(block(3)).iter().map(|block| block.seq).collect();
        assert_eq!(due, [3, 4]);
        assert_eq!(order.stranded(), 0);
    }

    #[test]
    fn a_block_keeps_every_valid_beacon_in_its_partition_batch_and_every_line_in_order() {
        let valid = r#"{"v":1,"type":"play_heartbeat","ts":1763800000000,"session_id":"s","seq":1,"room_id":"r","platform":"web","cdn":"cdn-a","interval_ms":10000,"watch_ms":10000,"stall_count":0,"stall_ms":0}"#;
        let push = r#"{"v":1,"type":"push_heartbeat","ts":1763800000000,"session_id":"p","seq":1,"room_id":"r","platform":"web","cdn":"cdn-a","interval_ms":10000}"#;
        let mut data = Vec::new();
        let mut lines = vec![RawLine::Stored];
        for (offset, text) in [(1, valid), (2, "{\"v\":1}"), (3, push), (4, valid)] {
            let start = data.len();
            data.extend_from_slice(text.as_bytes());
            lines.push(RawLine::Text {
                offset,
                start,
                end: data.len(),
            });
        }
        lines.push(RawLine::Incomplete);
        let parsed = parse_block(RawBlock { seq: 7, data, lines }).unwrap();
        assert_eq!(parsed.seq, 7);
        let shape: Vec<String> = parsed
            .lines
            .iter()
            .map(|line| match line {
                BlockLine::Stored => "stored".to_string(),
                BlockLine::Incomplete => "incomplete".to_string(),
                BlockLine::Record(offset, Ok(placed)) => {
                    format!("{offset}: {:?} row {}", parsed.batches[placed.slot].0 .0, placed.row)
                }
                BlockLine::Record(offset, Err(error)) => format!("{offset}: {}", error.field),
            })
            .collect();
        assert_eq!(
            shape,
            [
                "stored",
                "1: Play row 0",
                "2: type",
                "3: Push row 0",
                "4: Play row 1",
                "incomplete"
            ]
        );
        let rows: Vec<usize> = parsed.batches.iter().map(|(_, batch)| batch.num_rows()).collect();
        assert_eq!(rows, [2, 1]);
    }
}
