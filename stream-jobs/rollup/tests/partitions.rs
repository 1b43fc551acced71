//! A backlog read partition by partition: without [`Engine::expect_partitions`], the partition read
//! first closes the windows of one read later, whose beacons are then dropped as late; with it, the
//! partition not read yet holds the watermark and nothing is late.

use qoe_rollup::{Checkpoint, Engine, EngineConfig, Offer, PartitionCheckpoint};
use qoe_simulator::{generate, SimConfig};

fn late_when_read_partition_by_partition(declare: bool) -> (u64, u64) {
    let config = SimConfig {
        seed: 5,
        start_ms: 1_763_800_020_000,
        duration_ms: 6 * 60_000,
        rooms: 4,
        viewers: 100,
        ..SimConfig::default()
    };
    let beacons: Vec<_> = generate(&config).collect();
    // Two partitions by room, as the collector keys them; each read to its end before the other.
    let (first, second): (Vec<_>, Vec<_>) = beacons.into_iter().partition(|beacon| beacon.room_id == "room-0001");
    let mut engine = Engine::new(EngineConfig::default(), None).unwrap();
    let now = 1_000;
    if declare {
        engine.expect_partitions(&[0, 1], now);
    }
    let (mut counted, mut late) = (0, 0);
    for (partition, records) in [(0, &first), (1, &second)] {
        for (offset, beacon) in records.iter().enumerate() {
            match engine.offer(partition, offset as i64, beacon, now) {
                Offer::Counted => counted += 1,
                Offer::Late => late += 1,
                _ => {}
            }
            for emission in engine.poll(now) {
                engine.acknowledge(emission.window_start_ms);
            }
        }
    }
    (counted, late)
}

#[test]
fn a_declared_partition_holds_the_watermark_until_it_is_read() {
    let (_, late_undeclared) = late_when_read_partition_by_partition(false);
    assert!(
        late_undeclared > 100,
        "the backlog problem this guards against: {late_undeclared} late"
    );
    let (counted, late) = late_when_read_partition_by_partition(true);
    assert_eq!(late, 0);
    assert!(counted > 1_000);
}

/// A declared partition not read yet is not in the checkpoint; a partition restored at offset 0 (its
/// first record is in a window not acknowledged yet) stays in it until it is read.
#[test]
fn only_partitions_read_or_restored_are_checkpointed() {
    let mut engine = Engine::new(EngineConfig::default(), None).unwrap();
    engine.expect_partitions(&[0, 1], 0);
    assert!(engine.checkpoint().partitions.is_empty());

    let restored = Checkpoint {
        closed_through_ms: 0,
        partitions: [(
            0,
            PartitionCheckpoint {
                offset: 0,
                max_event_ms: None,
            },
        )]
        .into(),
    };
    let mut engine = Engine::new(EngineConfig::default(), Some(&restored)).unwrap();
    engine.expect_partitions(&[0, 1], 0);
    let checkpoint = engine.checkpoint();
    assert_eq!(checkpoint.partitions.keys().copied().collect::<Vec<_>>(), vec![0]);
    assert_eq!(checkpoint.partitions[&0].offset, 0);
}
