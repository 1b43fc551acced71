//! What the batch job computes of a beacon where it is parsed, shared by the job
//! ([`crate::job`]) and the parallel parser ([`crate::parse`]): its keys in the job's maps and its
//! partition.

use qoe_schemas::tables::Table;
use qoe_schemas::{Beacon, FieldError};
use xxhash_rust::xxh3::{xxh3_128, xxh3_128_with_seed};

use crate::warehouse::HOUR_MS;

/// The de-duplication key of `(session_id, seq)`: a 128-bit hash (collisions are out of reach), one
/// shot, with `seq` as the seed.
pub(crate) fn dedup_key(session_id: &str, seq: u64) -> u128 {
    xxh3_128_with_seed(session_id.as_bytes(), seq)
}

/// The key of a session in the job's maps: a 128-bit hash of its id (collisions are out of reach), so
/// that the maps compare integers, not strings.
pub(crate) fn session_key(session_id: &str) -> u128 {
    xxh3_128(session_id.as_bytes())
}

/// A beacon's keys in the job's maps, computed where it was parsed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keys {
    pub(crate) dedup: u128,
    pub(crate) session: u128,
}

impl Keys {
    pub(crate) fn of(beacon: &Beacon) -> Keys {
        Keys {
            dedup: dedup_key(&beacon.session_id, beacon.seq),
            session: session_key(&beacon.session_id),
        }
    }
}

/// Parses one record's bytes as [`qoe_schemas::parse_record`] does, refusing text that is not UTF-8.
pub fn parse_payload(payload: &[u8]) -> Result<Beacon, FieldError> {
    qoe_schemas::parse_record_bytes(payload)
}

pub(crate) fn hour_of(time_ms: i64) -> i64 {
    time_ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// A beacon's event time, epoch ms.
pub(crate) fn event_time_of(beacon: &Beacon) -> i64 {
    i64::try_from(beacon.event_time_ms()).unwrap_or(i64::MAX)
}

/// The (table, event hour) partition of a beacon.
pub(crate) fn partition_of(beacon: &Beacon) -> (Table, i64) {
    (Table::of_family(beacon.kind.family()), hour_of(event_time_of(beacon)))
}
