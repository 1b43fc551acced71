//! `SessionRow::fold` (one beacon at a time, as the job folds while it reads) against the summary merge
//! it stands for, `merge(SessionRow::from_beacon(..))`, over simulator sessions in arrival order and in
//! a scrambled order (late and out-of-order beacons).

mod support;

use std::collections::BTreeMap;

use qoe_batch::sessions::SessionRow;
use qoe_schemas::{Beacon, Family};
use support::simulated;

fn by_session(beacons: &[Beacon]) -> BTreeMap<&str, Vec<&Beacon>> {
    let mut sessions: BTreeMap<&str, Vec<&Beacon>> = BTreeMap::new();
    for beacon in beacons.iter().filter(|beacon| beacon.kind.family() == Family::Play) {
        sessions.entry(&beacon.session_id).or_default().push(beacon);
    }
    sessions
}

fn check(order: &[&Beacon]) {
    let (first, rest) = order.split_first().expect("a session has a beacon");
    let mut folded = SessionRow::from_beacon(first);
    let mut merged = SessionRow::from_beacon(first);
    for beacon in rest {
        folded.fold(beacon);
        merged.merge(SessionRow::from_beacon(beacon));
    }
    assert_eq!(folded, merged, "session {}", first.session_id);
}

#[test]
fn folding_beacons_one_by_one_equals_merging_their_summaries() {
    let beacons = simulated(40, 300, 6, 5);
    let sessions = by_session(&beacons);
    assert!(sessions.len() > 200, "{} sessions", sessions.len());
    let mut folded_with_end = 0;
    for (index, order) in sessions.values().enumerate() {
        check(order);
        // Scrambled: every third beacon moved to the front, reversed.
        let moved = order.iter().enumerate().filter(|(at, _)| (at + index) % 3 == 0).rev();
        let kept = order.iter().enumerate().filter(|(at, _)| (at + index) % 3 != 0);
        let scrambled: Vec<&Beacon> = moved.chain(kept).map(|(_, beacon)| *beacon).collect();
        check(&scrambled);
        folded_with_end += usize::from(order.iter().any(|beacon| beacon.reason.is_some()));
    }
    assert!(folded_with_end > 50, "only {folded_with_end} sessions ended");
}
