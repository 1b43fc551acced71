//! The joint QoE/QoS incident detector: joins and leaves spiking together in the same window mean
//! viewers re-entering to fix playback (a technical, not a content, problem). Which parts spike
//! says where the problem is. The algorithm, its thresholds and its limits are in the crate
//! documentation ("The incident detector").

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use qoe_rollup::{Grain, RollupDoc};
use serde::{Deserialize, Serialize};

use crate::event::{Level, Localisation};
use crate::observation::{median_mad, round, Observation, MAD_SCALE};
use crate::rules::{Compiled, IncidentRule};

/// Trailing joins and leaves per series (`room|<room>`, `room_cdn|<room>|<cdn>`, `cdn|<cdn>`,
/// `edge|<cdn>|<ip>`, `isp|<isp>`, `region|<region>`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IncidentState {
    /// Per series: (window start, joins, leaves).
    history: BTreeMap<String, VecDeque<(i64, f64, f64)>>,
}

/// Joins, leaves and active sessions of one series in one window.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    joins: f64,
    leaves: f64,
    active: f64,
}

impl Counts {
    fn add(&mut self, doc: &RollupDoc) {
        self.joins += doc.joins as f64;
        self.leaves += doc.leaves as f64;
        self.active += doc.active_sessions as f64;
    }
}

/// A series judged against its baseline.
#[derive(Debug, Clone, Copy)]
struct Judged {
    /// Both joins and leaves above their bounds.
    spikes: bool,
    /// The series has enough history to be judged.
    judged: bool,
    median_joins: f64,
    median_leaves: f64,
    joins_bound: f64,
}

/// A room's CDN takes part in its re-entry spike with at least this share of its expected part.
const PARTICIPATION: f64 = 0.5;

struct Detector<'a> {
    rule: &'a IncidentRule,
    compiled: &'a Compiled,
    state: &'a IncidentState,
    start: i64,
    window_ms: i64,
}

impl Detector<'_> {
    /// Judges `counts` of `series` against its trailing history.
    fn judge(&self, series: &str, counts: Counts, min_excess: f64) -> Judged {
        let history: Vec<&(i64, f64, f64)> = self
            .state
            .history
            .get(series)
            .into_iter()
            .flatten()
            .filter(|(at, _, _)| *at >= self.start - self.compiled.trailing_ms && *at < self.start)
            .collect();
        let judged = history.len() as i64 * self.window_ms >= self.compiled.min_history_ms.max(self.window_ms);
        let joins: Vec<f64> = history.iter().map(|(_, joins, _)| *joins).collect();
        let leaves: Vec<f64> = history.iter().map(|(_, _, leaves)| *leaves).collect();
        let (median_joins, mad_joins) = median_mad(&joins);
        let (median_leaves, mad_leaves) = median_mad(&leaves);
        let bound = |median: f64, mad: f64| {
            (median + self.rule.k * MAD_SCALE * mad)
                .max(median * self.rule.factor)
                .max(median + min_excess)
        };
        let joins_bound = bound(median_joins, mad_joins);
        let leaves_bound = bound(median_leaves, mad_leaves);
        Judged {
            spikes: judged && counts.joins >= joins_bound && counts.leaves >= leaves_bound,
            judged,
            median_joins,
            median_leaves,
            joins_bound,
        }
    }
}

/// Among `parts` (name → counts and judgement), the serving ones (enough sessions and history) and
/// those of them that spike.
fn split(parts: &BTreeMap<String, (Counts, Judged)>, min_sessions: u64) -> (Vec<String>, Vec<String>) {
    let serving: Vec<String> = parts
        .iter()
        .filter(|(_, (counts, judged))| counts.active >= min_sessions as f64 && judged.judged)
        .map(|(name, _)| name.clone())
        .collect();
    let spiking = serving.iter().filter(|name| parts[*name].1.spikes).cloned().collect();
    (serving, spiking)
}

/// The one spiking part among at least two serving ones, if that is what happened.
fn single(serving: &[String], spiking: &[String]) -> Option<String> {
    (serving.len() >= 2 && spiking.len() == 1).then(|| spiking[0].clone())
}

/// Runs the detector over one window's documents and records the window in the baselines.
pub(crate) fn detect(
    rule: &IncidentRule,
    compiled: &Compiled,
    state: &mut IncidentState,
    start: i64,
    window_ms: i64,
    docs: &[RollupDoc],
) -> Vec<Observation> {
    // Per series of this window.
    let mut rooms: BTreeMap<&str, BTreeMap<String, Counts>> = BTreeMap::new();
    let mut cdns: BTreeMap<String, Counts> = BTreeMap::new();
    let mut isps: BTreeMap<String, Counts> = BTreeMap::new();
    let mut regions: BTreeMap<String, Counts> = BTreeMap::new();
    let mut edges: BTreeMap<String, BTreeMap<String, Counts>> = BTreeMap::new();
    for doc in docs {
        let dims = doc.dims();
        match doc.grain {
            Grain::Room => rooms
                .entry(dims[0])
                .or_default()
                .entry(dims[1].to_string())
                .or_default()
                .add(doc),
            Grain::Cdn => {
                cdns.entry(dims[0].to_string()).or_default().add(doc);
                regions.entry(dims[1].to_string()).or_default().add(doc);
                isps.entry(dims[2].to_string()).or_default().add(doc);
            }
            Grain::Edge => edges
                .entry(dims[0].to_string())
                .or_default()
                .entry(dims[1].to_string())
                .or_default()
                .add(doc),
            Grain::Push => {}
        }
    }

    let detector = Detector {
        rule,
        compiled,
        state,
        start,
        window_ms,
    };
    let judge_parts = |prefix: &str, parts: &BTreeMap<String, Counts>| -> BTreeMap<String, (Counts, Judged)> {
        parts
            .iter()
            .map(|(name, counts)| {
                let judged = detector.judge(&format!("{prefix}|{name}"), *counts, rule.min_part_excess);
                (name.clone(), (*counts, judged))
            })
            .collect()
    };
    // The one spiking edge of `cdn`, if exactly one of its serving edges spikes.
    let single_edge = |cdn: &str| -> Option<String> {
        let judged = judge_parts(&format!("edge|{cdn}"), edges.get(cdn)?);
        let (serving, spiking) = split(&judged, rule.min_sessions);
        single(&serving, &spiking)
    };

    let mut observations = Vec::new();
    // Excess joins and leaves of rooms that re-entered, per CDN (to take out of the fleet series).
    let mut room_excess: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (room, parts) in &rooms {
        let mut total = Counts::default();
        for counts in parts.values() {
            total.joins += counts.joins;
            total.leaves += counts.leaves;
            total.active += counts.active;
        }
        let whole = detector.judge(&format!("room|{room}"), total, rule.min_excess);
        if !whole.spikes {
            continue;
        }
        let judged = judge_parts(&format!("room_cdn|{room}"), parts);
        for (cdn, (counts, judgement)) in &judged {
            let excess = room_excess.entry(cdn.clone()).or_default();
            excess.0 += (counts.joins - judgement.median_joins).max(0.0);
            excess.1 += (counts.leaves - judgement.median_leaves).max(0.0);
        }
        // A CDN takes part when its own excess is at least half of its share (by active sessions)
        // of the room's excess, for joins and for leaves: a publisher problem spreads the excess
        // over the CDNs in proportion to their viewers, a CDN problem puts it all on one.
        let excess_joins = total.joins - whole.median_joins;
        let excess_leaves = total.leaves - whole.median_leaves;
        let serving: Vec<String> = judged
            .iter()
            .filter(|(_, (counts, judgement))| counts.active >= rule.min_sessions as f64 && judgement.judged)
            .map(|(cdn, _)| cdn.clone())
            .collect();
        let spiking: Vec<String> = serving
            .iter()
            .filter(|cdn| {
                let (counts, judgement) = &judged[*cdn];
                let share = counts.active / total.active.max(1.0);
                let joins = counts.joins - judgement.median_joins;
                let leaves = counts.leaves - judgement.median_leaves;
                joins > 0.0
                    && leaves > 0.0
                    && joins >= PARTICIPATION * share * excess_joins
                    && leaves >= PARTICIPATION * share * excess_leaves
            })
            .cloned()
            .collect();
        let breakdown: Vec<String> = judged
            .iter()
            .map(|(cdn, (counts, judgement))| {
                format!(
                    "{cdn} {}/{} (baseline {}/{}, {} sessions)",
                    counts.joins,
                    counts.leaves,
                    round(judgement.median_joins),
                    round(judgement.median_leaves),
                    counts.active
                )
            })
            .collect();
        let (level, target, where_) = if serving.len() >= 2 && spiking == serving {
            (
                Level::Publisher,
                room.to_string(),
                format!("on every CDN ({})", spiking.join(", ")),
            )
        } else if let Some(cdn) = single(&serving, &spiking) {
            let others = format!("on {cdn} only, of {}", serving.join(", "));
            match single_edge(&cdn) {
                Some(ip) => (Level::Edge, ip.clone(), format!("{others}, edge node {ip}")),
                None => (Level::Cdn, cdn, others),
            }
        } else {
            let place = if spiking.is_empty() {
                "no single CDN".to_string()
            } else {
                spiking.join(", ")
            };
            (
                Level::Room,
                room.to_string(),
                format!("on {place} of {} serving CDNs", serving.len()),
            )
        };
        let mut labels = BTreeMap::from([
            ("room_id".to_string(), room.to_string()),
            ("level".to_string(), level.as_str().to_string()),
            ("target".to_string(), target.clone()),
        ]);
        if level == Level::Edge {
            labels.insert("cdn".to_string(), spiking[0].clone());
        }
        let blame = match level {
            Level::Publisher => "the publisher's side (push or its network), not a CDN",
            Level::Cdn => "that CDN",
            Level::Edge => "that edge node",
            _ => "not localised further",
        };
        observations.push(Observation {
            grain: Grain::Room,
            labels,
            holds: true,
            value: Some(total.joins),
            threshold: Some(whole.joins_bound),
            localisation: Localisation { level, target },
            summary: format!(
                "viewers re-entering {room}: {} joins and {} leaves in the window (baseline {} and {}) {where_}: {blame}; joins/leaves per CDN: {}",
                total.joins,
                total.leaves,
                round(whole.median_joins),
                round(whole.median_leaves),
                breakdown.join(", ")
            ),
        });
    }

    if rule.fleet {
        // Fleet series per CDN, with the rooms' re-entries taken out (the room grain has the CDN).
        let adjusted: BTreeMap<String, Counts> = cdns
            .iter()
            .map(|(cdn, counts)| {
                let (joins, leaves) = room_excess.get(cdn).copied().unwrap_or_default();
                let counts = Counts {
                    joins: (counts.joins - joins).max(0.0),
                    leaves: (counts.leaves - leaves).max(0.0),
                    active: counts.active,
                };
                (cdn.clone(), counts)
            })
            .collect();
        let judged_cdns = judge_parts("cdn", &adjusted);
        let (serving, spiking) = split(&judged_cdns, rule.min_sessions);
        // ISP, region and edge series cannot be corrected for a room's re-entries (the room grain
        // has no such dimension), so they are only read in windows (and CDNs) without any.
        let network = |dimension: &str, parts: &BTreeMap<String, Counts>| -> Option<String> {
            if !room_excess.is_empty() {
                return None;
            }
            let judged = judge_parts(dimension, parts);
            let (serving, spiking) = split(&judged, rule.min_sessions);
            single(&serving, &spiking).map(|value| format!("{dimension}={value}"))
        };
        let mut places: Vec<(Level, String, Option<String>)> = Vec::new();
        if serving.len() >= 2 && spiking == serving {
            match network("isp", &isps).or_else(|| network("region", &regions)) {
                Some(target) => places.push((Level::Network, target, None)),
                None => places.push((Level::Service, "*".to_string(), None)),
            }
        } else {
            let touched: BTreeSet<&String> = room_excess.keys().collect();
            for cdn in adjusted.keys() {
                let edge = (!touched.contains(cdn)).then(|| single_edge(cdn)).flatten();
                match edge {
                    Some(ip) => places.push((Level::Edge, ip, Some(cdn.clone()))),
                    None if spiking.contains(cdn) => places.push((Level::Cdn, cdn.clone(), None)),
                    None => {}
                }
            }
            if spiking.is_empty() && places.is_empty() {
                if let Some(target) = network("isp", &isps).or_else(|| network("region", &regions)) {
                    places.push((Level::Network, target, None));
                }
            }
        }
        for (level, target, cdn) in places {
            let mut labels = BTreeMap::from([
                ("scope".to_string(), "fleet".to_string()),
                ("level".to_string(), level.as_str().to_string()),
                ("target".to_string(), target.clone()),
            ]);
            if let Some(cdn) = &cdn {
                labels.insert("cdn".to_string(), cdn.clone());
            }
            let series = match (level, &cdn) {
                (Level::Cdn, _) => Some(&judged_cdns[&target]),
                _ => None,
            };
            observations.push(Observation {
                grain: if level == Level::Edge { Grain::Edge } else { Grain::Cdn },
                labels,
                holds: true,
                value: series.map(|(counts, _)| counts.joins),
                threshold: series.map(|(_, judged)| judged.joins_bound),
                localisation: Localisation {
                    level,
                    target: target.clone(),
                },
                summary: format!(
                    "viewers of many rooms re-entering (joins and leaves spiking together) on {} {target}",
                    level.as_str()
                ),
            });
        }
    }

    // Record this window in the baselines (raw values: a one-window spike barely moves a median).
    let mut record = |series: String, counts: &Counts| {
        let history = state.history.entry(series).or_default();
        history.push_back((start, counts.joins, counts.leaves));
    };
    for (room, parts) in &rooms {
        let mut total = Counts::default();
        for (cdn, counts) in parts {
            total.joins += counts.joins;
            total.leaves += counts.leaves;
            record(format!("room_cdn|{room}|{cdn}"), counts);
        }
        record(format!("room|{room}"), &total);
    }
    for (prefix, parts) in [("cdn", &cdns), ("isp", &isps), ("region", &regions)] {
        for (name, counts) in parts {
            record(format!("{prefix}|{name}"), counts);
        }
    }
    for (cdn, parts) in &edges {
        for (ip, counts) in parts {
            record(format!("edge|{cdn}|{ip}"), counts);
        }
    }
    let oldest = start - compiled.trailing_ms;
    state.history.retain(|_, history| {
        while history.front().is_some_and(|(at, _, _)| *at < oldest) {
            history.pop_front();
        }
        !history.is_empty()
    });
    observations
}
