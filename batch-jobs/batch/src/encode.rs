//! A flush's files encoded as Parquet on every core, column by column: the beacon files from their
//! sorted rows, and the `play_sessions` files from their record batches ([`encode_batch`]).
//!
//! One flush usually holds one large file (the `play` rows of the current hour) and a few small ones.
//! Encoding whole files on separate threads left one core idle while the other encoded the large file,
//! so each row group is encoded column by column instead: the columns are gathered into sort order and
//! encoded by as many threads as there are cores, and the chunks are appended in schema order
//! ([`parquet::arrow::arrow_writer::ArrowColumnWriter`]). The bytes are those of
//! [`crate::warehouse::encode_parquet`] over the sorted batch: the same writer settings, schema and
//! row groups.

use std::ops::Range;
use std::sync::Mutex;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnChunk, ArrowColumnWriter};
use parquet::arrow::ArrowWriter;
use qoe_schemas::tables::{self, Table};

use crate::columns::{PartitionRows, SortedRows};
use crate::warehouse::{writer_properties, ROW_GROUP_ROWS};
use crate::BatchError;
use parquet::file::properties::WriterProperties;

/// One beacon file of a flush, encoded: its (table, hour), rows, and Parquet bytes.
pub(crate) type Encoded = ((Table, i64), u64, Vec<u8>);

/// The encoded chunks of one field (one per Parquet leaf), or why it failed.
type Chunks = Result<Vec<ArrowColumnChunk>, BatchError>;

/// Parquet leaf columns of an Arrow field (a map has two: keys and values).
fn leaves(data_type: &DataType) -> usize {
    match data_type {
        DataType::Struct(fields) => fields.iter().map(|field| leaves(field.data_type())).sum(),
        DataType::Map(entries, _) => leaves(entries.data_type()),
        DataType::List(item) | DataType::LargeList(item) => leaves(item.data_type()),
        _ => 1,
    }
}

/// Sorts and encodes the beacon files of a flush, in the order of `partitions`. No IO: the caller
/// writes the files, one step each.
pub(crate) fn encode_partitions(
    partitions: impl IntoIterator<Item = ((Table, i64), PartitionRows)>,
) -> Result<Vec<Encoded>, BatchError> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    partitions
        .into_iter()
        .map(|(key, rows)| {
            let sorted = rows.into_sorted().map_err(|source| BatchError::Arrow {
                context: format!("sorting the {} rows of hour {}", key.0.name(), key.1),
                source,
            })?;
            let count = sorted.rows() as u64;
            let properties = writer_properties(sorted.table(), &tables::schema(sorted.table()), ROW_GROUP_ROWS)?;
            Ok((key, count, encode_sorted(&sorted, threads, properties)?))
        })
        .collect()
}

/// Encodes one record batch of `table`'s published schema as [`crate::warehouse::encode_parquet`]
/// does (the same bytes), each row group's columns on every core.
pub(crate) fn encode_batch(table: Table, batch: &RecordBatch) -> Result<Vec<u8>, BatchError> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let properties = writer_properties(table, &batch.schema(), ROW_GROUP_ROWS)?;
    let column = |index: usize, range: Range<usize>| Ok(batch.column(index).slice(range.start, range.len()));
    encode_columns(table, batch.num_rows(), &column, threads, properties)
}

/// Encodes sorted rows as the bytes of a Parquet file written with `properties` (see
/// [`encode_columns`]).
fn encode_sorted(sorted: &SortedRows, threads: usize, properties: WriterProperties) -> Result<Vec<u8>, BatchError> {
    let column = |index: usize, range: Range<usize>| sorted.column(index, range);
    encode_columns(sorted.table(), sorted.rows(), &column, threads, properties)
}

/// A column (by schema position) of the rows in a range.
type ColumnOf<'a> = dyn Fn(usize, Range<usize>) -> Result<ArrayRef, ArrowError> + Sync + 'a;

/// Encodes `rows` rows of `table`, whose columns `column` gives, as the bytes of a Parquet file
/// written with `properties`, each row group's columns on `threads` threads. Row groups are cut by
/// row count only: the properties must not ask for cuts by size or content, which only `ArrowWriter`
/// itself makes.
fn encode_columns(
    table: Table,
    rows: usize,
    column: &ColumnOf<'_>,
    threads: usize,
    properties: WriterProperties,
) -> Result<Vec<u8>, BatchError> {
    let schema = tables::schema(table);
    let Some(row_group_rows) = properties.max_row_group_row_count() else {
        return Err(BatchError::Internal("row groups need a row count limit".to_string()));
    };
    if properties.max_row_group_bytes().is_some() || properties.content_defined_chunking().is_some() {
        return Err(BatchError::Internal(
            "row groups cut by size or content cannot be encoded column by column".to_string(),
        ));
    }
    let encoding = |source| BatchError::Parquet {
        context: format!("encoding a {} file", table.name()),
        source,
    };
    let writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties)).map_err(encoding)?;
    let (mut file, factory) = writer.into_serialized_writer().map_err(encoding)?;
    let fields: Vec<&Field> = schema.fields().iter().map(|field| field.as_ref()).collect();
    let mut start = 0;
    let mut row_group = 0;
    while start < rows {
        let range = start..(start + row_group_rows.max(1)).min(rows);
        start = range.end;
        // The column writers of each field (one per Parquet leaf), taken by whichever thread is free.
        let mut writers = factory.create_column_writers(row_group).map_err(encoding)?.into_iter();
        row_group += 1;
        let mut queue: Vec<(usize, Vec<ArrowColumnWriter>)> = fields
            .iter()
            .enumerate()
            .map(|(index, field)| (index, writers.by_ref().take(leaves(field.data_type())).collect()))
            .collect();
        // Taken from the end: the first fields first.
        queue.reverse();
        let queue = Mutex::new(queue);
        let encode_field = |index: usize, writers: Vec<ArrowColumnWriter>| -> Chunks {
            let in_column = |source| BatchError::Parquet {
                context: format!("encoding column {:?} of a {} file", fields[index].name(), table.name()),
                source,
            };
            let array = column(index, range.clone()).map_err(|source| BatchError::Arrow {
                context: format!("gathering column {:?} of a {} file", fields[index].name(), table.name()),
                source,
            })?;
            let leaves = compute_leaves(fields[index], &array).map_err(in_column)?;
            if leaves.len() != writers.len() {
                return Err(BatchError::Internal(format!(
                    "column {:?}: {} leaves for {} writers",
                    fields[index].name(),
                    leaves.len(),
                    writers.len()
                )));
            }
            let mut done = Vec::with_capacity(writers.len());
            for (leaf, mut writer) in leaves.iter().zip(writers) {
                writer.write(leaf).map_err(in_column)?;
                done.push(writer.close().map_err(in_column)?);
            }
            Ok(done)
        };
        let work = || {
            let mut encoded = Vec::new();
            loop {
                let next = queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
                let Some((index, writers)) = next else { return encoded };
                encoded.push((index, encode_field(index, writers)));
            }
        };
        let mut encoded = std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..threads.min(fields.len())).map(|_| scope.spawn(work)).collect();
            let mut encoded = work();
            for helper in helpers {
                let Ok(theirs) = helper.join() else {
                    return Err(BatchError::Join("a Parquet encoding thread panicked".to_string()));
                };
                encoded.extend(theirs);
            }
            Ok(encoded)
        })?;
        if encoded.len() != fields.len() {
            return Err(BatchError::Join(format!(
                "{} of {} columns encoded",
                encoded.len(),
                fields.len()
            )));
        }
        encoded.sort_unstable_by_key(|(index, _)| *index);
        let mut group = file.next_row_group().map_err(encoding)?;
        for (_, chunks) in encoded {
            for chunk in chunks? {
                chunk.append_to_row_group(&mut group).map_err(encoding)?;
            }
        }
        group.close().map_err(encoding)?;
    }
    file.into_inner().map_err(encoding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::TableBuffer;
    use crate::warehouse::encode_parquet;
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use qoe_schemas::{Beacon, BeaconType};
    use std::collections::BTreeMap;

    fn beacons() -> Vec<Beacon> {
        (0..300u64)
            .map(|i| Beacon {
                v: 1,
                kind: BeaconType::PlayHeartbeat,
                ts: 1_763_800_000_000 + i,
                session_id: format!("s-{}", i % 7),
                seq: i,
                room_id: format!("r-{}", i % 3),
                cdn: (i % 5 != 0).then(|| format!("cdn-{}", i % 4)),
                exp: (i % 2 == 0).then(|| BTreeMap::from([("abr".to_string(), format!("arm-{}", i % 3))])),
                watch_ms: Some(i * 10),
                ..Default::default()
            })
            .collect()
    }

    fn partition(beacons: &[Beacon]) -> PartitionRows {
        let mut rows = PartitionRows::new(Table::Play);
        for part in beacons.chunks(120) {
            let mut buffer = TableBuffer::new(Table::Play).unwrap();
            for beacon in part {
                buffer.push(beacon).unwrap();
            }
            let kept = (0..part.len() as u32).collect();
            rows.add(buffer.finish().unwrap(), kept).unwrap();
        }
        rows
    }

    #[test]
    fn column_by_column_gives_the_bytes_of_the_whole_batch_writer() {
        let beacons = beacons();
        let batch = partition(&beacons).finish_sorted().unwrap();
        let expected = encode_parquet(Table::Play, &batch).unwrap();
        let properties = || writer_properties(Table::Play, &batch.schema(), ROW_GROUP_ROWS).unwrap();
        for threads in [1, 2, 3] {
            let sorted = partition(&beacons).into_sorted().unwrap();
            assert_eq!(
                encode_sorted(&sorted, threads, properties()).unwrap(),
                expected,
                "{threads} threads"
            );
        }
        // Several row groups: against `ArrowWriter` with the same small row groups.
        let small = || writer_properties(Table::Play, &batch.schema(), 128).unwrap();
        let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(small())).unwrap();
        writer.write(&batch).unwrap();
        let expected = writer.into_inner().unwrap();
        let sorted = partition(&beacons).into_sorted().unwrap();
        assert_eq!(encode_sorted(&sorted, 2, small()).unwrap(), expected);
    }

    #[test]
    fn a_whole_batch_gives_the_bytes_of_the_whole_batch_writer() {
        let batch = partition(&beacons()).finish_sorted().unwrap();
        assert_eq!(
            encode_batch(Table::Play, &batch).unwrap(),
            encode_parquet(Table::Play, &batch).unwrap()
        );
        let empty = RecordBatch::new_empty(tables::schema(Table::PlaySessions));
        assert_eq!(
            encode_batch(Table::PlaySessions, &empty).unwrap(),
            encode_parquet(Table::PlaySessions, &empty).unwrap()
        );
    }

    #[test]
    fn row_groups_hold_the_sorted_rows_in_order() {
        let beacons = beacons();
        let batch = partition(&beacons).finish_sorted().unwrap();
        let sorted = partition(&beacons).into_sorted().unwrap();
        let properties = writer_properties(Table::Play, &batch.schema(), 128).unwrap();
        let bytes = encode_sorted(&sorted, 2, properties).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 3);
        let read: Vec<_> = reader.build().unwrap().map(|batch| batch.unwrap()).collect();
        let read = arrow::compute::concat_batches(&batch.schema(), &read).unwrap();
        assert_eq!(read, batch);
    }
}
