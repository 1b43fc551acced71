//! The incident detector on a synthetic service: one room on three CDNs, each CDN with three edge
//! nodes and cdn-grain documents for two ISPs in two regions. A problem injected in minute 20 must be
//! localised to the place it was injected, and nothing must fire otherwise.

use qoe_rollup::{Grain, RollupDoc};

use crate::event::rfc3339;
use crate::{AlertState, Evaluator, Level, RuleSet};

const T0: i64 = 1_763_800_020_000;
const MINUTE: i64 = 60_000;
const CDNS: [(&str, u64, u64); 3] = [("cdn-a", 6, 60), ("cdn-b", 4, 40), ("cdn-c", 3, 30)];
const RULE: &str = r#"
[[rule]]
name = "reentry"
kind = "incident"
trailing = "30m"
min_history = "10m"
k = 5.0
factor = 2.0
min_excess = 15
min_part_excess = 6
min_sessions = 10
"#;

/// Extra joins and leaves in minute 20.
#[derive(Default, Clone, Copy)]
struct Inject {
    /// Per CDN index, on the room (and on the CDN's fleet documents, spread over its edges).
    room: [u64; 3],
    /// All of the room's extra on cdn-a goes to edge 1 of cdn-a rather than spread.
    room_on_one_edge: bool,
    /// On edge 2 of cdn-b (and on cdn-b's fleet documents), without the room.
    edge: u64,
    /// On every cdn-grain document of ISP `unicom` (and spread over edges).
    isp: u64,
    /// On every cdn-grain document (and spread over edges).
    all: u64,
}

fn doc(minute: i64, grain: Grain, dims: &[&str], joins: u64, leaves: u64, active: u64) -> RollupDoc {
    let mut doc = RollupDoc {
        timestamp: rfc3339(T0 + minute * MINUTE),
        window_s: 60,
        grain,
        is_final: true,
        joins,
        leaves,
        active_sessions: active,
        ..RollupDoc::default()
    };
    doc.set_dims(&dims.iter().map(|dim| dim.to_string()).collect::<Vec<_>>());
    doc
}

fn world(minute: i64, inject: Inject) -> Vec<RollupDoc> {
    let now = if minute == 20 { inject } else { Inject::default() };
    let v = (minute % 3) as u64;
    let w = ((minute + 1) % 3) as u64;
    let mut docs = Vec::new();
    for (at, (cdn, base, active)) in CDNS.iter().enumerate() {
        let extra = now.room[at];
        docs.push(doc(
            minute,
            Grain::Room,
            &["room-1", cdn],
            base + v + extra,
            base + w + extra,
            *active,
        ));
        let mut fleet_extra = extra + if at == 1 { now.edge } else { 0 };
        for (region, isp) in [
            ("north", "telecom"),
            ("north", "unicom"),
            ("south", "telecom"),
            ("south", "unicom"),
        ] {
            let varies = if (region, isp) == ("north", "telecom") { 1 } else { 0 };
            let mut extra = now.all + if isp == "unicom" { now.isp } else { 0 };
            // The room's and the edge's extra go to the first document.
            extra += std::mem::take(&mut fleet_extra);
            let (joins, leaves) = (4 + varies * v + extra, 4 + varies * w + extra);
            docs.push(doc(minute, Grain::Cdn, &[cdn, region, isp, "ios"], joins, leaves, 40));
        }
        let spread = (extra + 4 * now.all + 2 * now.isp) / 3;
        for edge in 0..3u64 {
            let ip = format!("10.0.{at}.{edge}");
            let mut extra = if now.room_on_one_edge && at == 0 { 0 } else { spread };
            if now.room_on_one_edge && at == 0 && edge == 1 {
                extra = now.room[0];
            }
            if at == 1 && edge == 2 {
                extra += now.edge;
            }
            let varies = u64::from(edge == 0);
            docs.push(doc(
                minute,
                Grain::Edge,
                &[cdn, &ip],
                5 + varies * v + extra,
                5 + varies * w + extra,
                40,
            ));
        }
    }
    docs
}

/// The firing events of 40 minutes with `inject` in minute 20, as (level, target); checks that each
/// fires in minute 20 and resolves in minute 21.
fn localise(inject: Inject) -> Vec<(Level, String)> {
    let mut evaluator = Evaluator::new(RuleSet::from_toml(RULE).unwrap());
    let mut found = Vec::new();
    for minute in 0..40 {
        for doc in world(minute, inject) {
            evaluator.observe(&doc).unwrap();
        }
        for event in evaluator.advance(T0 + minute * MINUTE) {
            match event.state {
                AlertState::Firing => {
                    assert_eq!(minute, 20, "{event:#?}");
                    found.push((event.localisation.level, event.localisation.target));
                }
                AlertState::Resolved => assert_eq!(minute, 21, "{event:#?}"),
            }
        }
    }
    found
}

#[test]
fn a_quiet_service_raises_nothing() {
    assert_eq!(localise(Inject::default()), []);
}

#[test]
fn spikes_on_every_cdn_of_a_room_point_at_its_publisher() {
    let inject = Inject {
        room: [20, 14, 10],
        ..Inject::default()
    };
    assert_eq!(localise(inject), [(Level::Publisher, "room-1".to_string())]);
}

#[test]
fn spikes_on_one_cdn_of_a_room_point_at_that_cdn() {
    let inject = Inject {
        room: [30, 0, 0],
        ..Inject::default()
    };
    assert_eq!(localise(inject), [(Level::Cdn, "cdn-a".to_string())]);
}

#[test]
fn spikes_on_one_edge_of_that_cdn_point_at_the_edge() {
    let inject = Inject {
        room: [30, 0, 0],
        room_on_one_edge: true,
        ..Inject::default()
    };
    assert_eq!(localise(inject), [(Level::Edge, "10.0.0.1".to_string())]);
}

#[test]
fn fleet_spikes_on_one_edge_point_at_the_edge() {
    let inject = Inject {
        edge: 20,
        ..Inject::default()
    };
    assert_eq!(localise(inject), [(Level::Edge, "10.0.1.2".to_string())]);
}

#[test]
fn fleet_spikes_in_one_isp_on_every_cdn_point_at_the_network() {
    let inject = Inject {
        isp: 10,
        ..Inject::default()
    };
    assert_eq!(localise(inject), [(Level::Network, "isp=unicom".to_string())]);
}

#[test]
fn fleet_spikes_everywhere_point_upstream_of_the_cdns() {
    let inject = Inject {
        all: 10,
        ..Inject::default()
    };
    assert_eq!(localise(inject), [(Level::Service, "*".to_string())]);
}
