//! The evaluator: final rollup documents in, window by window, alert events out; its state is a
//! serde [`Snapshot`] the driver persists.

use std::collections::{BTreeMap, VecDeque};

use qoe_rollup::{Emission, Grain, RollupDoc};
use serde::{Deserialize, Serialize};

use crate::event::{episode_id, fingerprint, rfc3339, AlertEvent, AlertState, Level, Localisation};
use crate::incident::{self, IncidentState};
use crate::observation::{median_mad, round, Observation, MAD_SCALE};
use crate::rules::{Compiled, Deviation, Direction, Rule, RuleSet};
use crate::AlertError;

/// The snapshot format version.
const SNAPSHOT_VERSION: u32 = 1;
/// The evaluator's whole state after the last evaluated window: serialize it (e.g. with
/// `serde_json`) after writing that window's events, and pass it to [`Evaluator::restore`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    version: u32,
    window_ms: Option<i64>,
    evaluated_through_ms: Option<i64>,
    rules: BTreeMap<String, RuleState>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleState {
    /// Per series fingerprint.
    series: BTreeMap<String, SeriesState>,
    /// The incident detector's baselines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    incident: Option<IncidentState>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesState {
    /// First window of the current run of windows in which the condition held.
    streak_start_ms: Option<i64>,
    /// Last window in which the condition held.
    last_held_ms: Option<i64>,
    /// The open episode's firing event, if firing.
    firing: Option<AlertEvent>,
    /// Trailing values of a baseline rule: (window start, value).
    history: VecDeque<(i64, f64)>,
}

/// Evaluates a [`RuleSet`] over final rollup documents (see the crate documentation).
#[derive(Debug, Clone)]
pub struct Evaluator {
    rules: RuleSet,
    state: Snapshot,
    pending: BTreeMap<i64, Vec<RollupDoc>>,
}

impl Evaluator {
    /// An evaluator with no history.
    pub fn new(rules: RuleSet) -> Evaluator {
        let state = Snapshot {
            version: SNAPSHOT_VERSION,
            ..Snapshot::default()
        };
        Evaluator {
            rules,
            state,
            pending: BTreeMap::new(),
        }
    }

    /// An evaluator that continues from `snapshot`. State of rules no longer in `rules` is dropped
    /// (their firing alerts are not resolved: they simply stop); a rule keeps its state by name.
    pub fn restore(rules: RuleSet, mut snapshot: Snapshot) -> Result<Evaluator, AlertError> {
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(AlertError::Snapshot(format!(
                "version {} is not {SNAPSHOT_VERSION}",
                snapshot.version
            )));
        }
        snapshot
            .rules
            .retain(|name, _| rules.rules.iter().any(|compiled| compiled.rule.name() == name));
        Ok(Evaluator {
            rules,
            state: snapshot,
            pending: BTreeMap::new(),
        })
    }

    /// The state after the last evaluated window (documents observed for later windows are not in
    /// it: a restarted driver replays them).
    pub fn snapshot(&self) -> Snapshot {
        self.state.clone()
    }

    /// Start of the last evaluated window, epoch ms.
    pub fn evaluated_through_ms(&self) -> Option<i64> {
        self.state.evaluated_through_ms
    }

    /// Buffers a final document for its window. Returns `Ok(false)` and ignores the document when
    /// its window was evaluated already (a replay after a restart).
    pub fn observe(&mut self, doc: &RollupDoc) -> Result<bool, AlertError> {
        if !doc.is_final {
            return Err(AlertError::NotFinal(doc.id()));
        }
        let start = qoe_schemas::time::parse_rfc3339_utc(&doc.timestamp)
            .ok_or_else(|| AlertError::Timestamp(doc.timestamp.clone()))?;
        let window_ms = i64::from(doc.window_s) * 1_000;
        match self.state.window_ms {
            Some(known) if known != window_ms => {
                return Err(AlertError::WindowLength {
                    expected_s: known / 1_000,
                    got_s: i64::from(doc.window_s),
                })
            }
            Some(_) => {}
            None if window_ms <= 0 => {
                return Err(AlertError::WindowLength {
                    expected_s: 60,
                    got_s: 0,
                })
            }
            None => self.state.window_ms = Some(window_ms),
        }
        if self.state.evaluated_through_ms.is_some_and(|through| start <= through) {
            return Ok(false);
        }
        self.pending.entry(start).or_default().push(doc.clone());
        Ok(true)
    }

    /// Evaluates every buffered window that starts at or before `through_ms`, in window order, and
    /// returns their events (each transition once). Windows without any document are skipped: the
    /// state waits for data rather than resolving everything during a pipeline gap.
    pub fn advance(&mut self, through_ms: i64) -> Vec<AlertEvent> {
        let later = self.pending.split_off(&(through_ms + 1));
        let ready = std::mem::replace(&mut self.pending, later);
        let mut events = Vec::new();
        for (start, docs) in ready {
            events.extend(self.evaluate(start, &docs));
            self.state.evaluated_through_ms = Some(start);
        }
        events
    }

    /// [`observe`](Self::observe) every document of a final emission, then
    /// [`advance`](Self::advance) through its window. Early (non-final) emissions are ignored.
    pub fn observe_emission(&mut self, emission: &Emission) -> Result<Vec<AlertEvent>, AlertError> {
        if !emission.is_final {
            return Ok(Vec::new());
        }
        for doc in &emission.docs {
            self.observe(doc)?;
        }
        Ok(self.advance(emission.window_start_ms))
    }

    fn evaluate(&mut self, start: i64, docs: &[RollupDoc]) -> Vec<AlertEvent> {
        let window_ms = self.state.window_ms.unwrap_or(60_000);
        let previous = self.state.evaluated_through_ms;
        let mut events = Vec::new();
        for compiled in &self.rules.rules {
            let state = self.state.rules.entry(compiled.rule.name().to_string()).or_default();
            let observations = match &compiled.rule {
                Rule::Threshold(_) | Rule::Baseline(_) => series_observations(compiled, state, start, window_ms, docs),
                Rule::Incident(rule) => {
                    let detector = state.incident.get_or_insert_with(IncidentState::default);
                    incident::detect(rule, compiled, detector, start, window_ms, docs)
                }
            };
            step(compiled, state, observations, start, previous, window_ms, &mut events);
        }
        events
    }
}

/// Threshold and baseline rules: one observation per series with a value in the window.
fn series_observations(
    compiled: &Compiled,
    state: &mut RuleState,
    start: i64,
    window_ms: i64,
    docs: &[RollupDoc],
) -> Vec<Observation> {
    let (grain, filter) = match &compiled.rule {
        Rule::Threshold(rule) => (rule.grain, &rule.filter),
        Rule::Baseline(rule) => (rule.grain, &rule.filter),
        Rule::Incident(_) => return Vec::new(),
    };
    let names = grain.dim_names();
    let mut groups: BTreeMap<Vec<&str>, Vec<&RollupDoc>> = BTreeMap::new();
    for doc in docs.iter().filter(|doc| doc.grain == grain) {
        let dims = doc.dims();
        let value_of = |dim: &str| names.iter().position(|name| *name == dim).map(|at| dims[at]);
        if filter.iter().all(|(dim, value)| value_of(dim) == Some(value.as_str())) {
            let key = compiled.by.iter().filter_map(|dim| value_of(dim)).collect();
            groups.entry(key).or_default().push(doc);
        }
    }
    let metric = compiled.metric.expect("threshold and baseline rules have a metric");
    let mut observations = Vec::new();
    for (key, members) in groups {
        if let Some((volume, floor)) = compiled.min_volume {
            if volume.value(&members).is_none_or(|volume| volume < floor) {
                continue;
            }
        }
        let Some(value) = metric.value(&members) else { continue };
        let labels: BTreeMap<String, String> = compiled
            .by
            .iter()
            .zip(&key)
            .map(|(dim, value)| (dim.to_string(), value.to_string()))
            .collect();
        let localisation = localise(grain, &labels);
        let (holds, threshold, summary) = match &compiled.rule {
            Rule::Threshold(rule) => {
                let holds = rule.op.holds(value, rule.value);
                let summary = rule.summary.clone().unwrap_or_else(|| {
                    format!(
                        "{} {} {} on {}",
                        rule.metric,
                        rule.op.as_str(),
                        rule.value,
                        describe(&labels)
                    )
                });
                (holds, Some(rule.value), format!("{summary} (value {})", round(value)))
            }
            Rule::Baseline(rule) => {
                let series = state
                    .series
                    .entry(fingerprint(rule.name.as_str(), &labels))
                    .or_default();
                series.history.retain(|(at, _)| *at >= start - compiled.trailing_ms);
                let judged = (series.history.len() as i64) * window_ms >= compiled.min_history_ms.max(window_ms);
                let (holds, bound) = if judged {
                    let values: Vec<f64> = series.history.iter().map(|(_, value)| *value).collect();
                    deviates(rule.deviation, rule.direction, rule.min_delta, &values, value)
                } else {
                    (false, None)
                };
                series.history.push_back((start, value));
                let summary = rule.summary.clone().unwrap_or_else(|| {
                    format!(
                        "{} off its {} baseline on {}",
                        rule.metric,
                        rule.trailing,
                        describe(&labels)
                    )
                });
                let bound_text = bound
                    .map(|bound| format!(", bound {}", round(bound)))
                    .unwrap_or_default();
                (holds, bound, format!("{summary} (value {}{bound_text})", round(value)))
            }
            Rule::Incident(_) => unreachable!("filtered above"),
        };
        observations.push(Observation {
            grain,
            labels,
            holds,
            value: Some(value),
            threshold,
            localisation,
            summary,
        });
    }
    observations
}

/// Whether `value` deviates from the baseline `history`, and the bound it was compared with.
pub(crate) fn deviates(
    deviation: Deviation,
    direction: Direction,
    min_delta: f64,
    history: &[f64],
    value: f64,
) -> (bool, Option<f64>) {
    let (median, mad) = median_mad(history);
    let (upper, lower) = match deviation {
        Deviation::Mad(k) => (
            median + (k * MAD_SCALE * mad).max(min_delta),
            median - (k * MAD_SCALE * mad).max(min_delta),
        ),
        Deviation::Ratio(factor) => (
            (median * factor).max(median + min_delta),
            (median / factor).min(median - min_delta),
        ),
    };
    let up = value > upper;
    let down = value < lower;
    match direction {
        Direction::Up => (up, Some(upper)),
        Direction::Down => (down, Some(lower)),
        Direction::Both if down => (true, Some(lower)),
        Direction::Both => (up, Some(upper)),
    }
}

/// Where a threshold or baseline series points, from its grain and labels.
fn localise(grain: Grain, labels: &BTreeMap<String, String>) -> Localisation {
    let get = |name: &str| labels.get(name).cloned();
    let keys: Vec<&str> = labels.keys().map(String::as_str).collect();
    let (level, target) = if let (Grain::Push, Some(room)) = (grain, get("room_id")) {
        (Level::Publisher, room)
    } else if let Some(ip) = get("edge_ip") {
        (Level::Edge, ip)
    } else if let (Grain::Room, Some(room)) = (grain, get("room_id")) {
        (Level::Room, room)
    } else if keys == ["cdn"] {
        (Level::Cdn, labels["cdn"].clone())
    } else if !keys.is_empty() && keys.iter().all(|key| matches!(*key, "isp" | "region")) {
        (Level::Network, describe(labels))
    } else if keys.is_empty() {
        (Level::Service, "*".to_string())
    } else {
        (Level::Series, describe(labels))
    };
    Localisation { level, target }
}

/// `cdn=cdn-b,isp=telecom`, or `all` for no labels.
pub(crate) fn describe(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "all".to_string();
    }
    labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Moves every series of `compiled` one window on: `for`, `keep_firing_for`, one event per
/// transition.
fn step(
    compiled: &Compiled,
    state: &mut RuleState,
    observations: Vec<Observation>,
    start: i64,
    previous: Option<i64>,
    window_ms: i64,
    events: &mut Vec<AlertEvent>,
) {
    let rule = &compiled.rule;
    let mut seen: BTreeMap<String, Observation> = BTreeMap::new();
    for observation in observations {
        seen.insert(fingerprint(rule.name(), &observation.labels), observation);
    }
    for key in seen.keys() {
        state.series.entry(key.clone()).or_default();
    }
    for (key, series) in state.series.iter_mut() {
        let observation = seen.get(key).filter(|observation| observation.holds);
        if let Some(observation) = observation {
            let continues = series.last_held_ms.is_some() && series.last_held_ms == previous;
            if !continues || series.streak_start_ms.is_none() {
                series.streak_start_ms = Some(start);
            }
            series.last_held_ms = Some(start);
            let streak_start = series.streak_start_ms.unwrap_or(start);
            if series.firing.is_none() && start + window_ms - streak_start >= compiled.for_ms {
                let fingerprint = key.clone();
                let event = AlertEvent {
                    id: episode_id(&fingerprint, streak_start),
                    fingerprint,
                    rule: rule.name().to_string(),
                    kind: rule.kind().to_string(),
                    state: AlertState::Firing,
                    severity: rule.severity().as_str().to_string(),
                    starts_at: rfc3339(streak_start),
                    ends_at: None,
                    window: rfc3339(start),
                    window_s: (window_ms / 1_000) as u32,
                    grain: observation.grain.as_str().to_string(),
                    labels: observation.labels.clone(),
                    localisation: observation.localisation.clone(),
                    value: observation.value,
                    threshold: observation.threshold,
                    summary: observation.summary.clone(),
                };
                events.push(event.clone());
                series.firing = Some(event);
            } else if let Some(firing) = series.firing.as_mut() {
                firing.value = observation.value;
            }
        } else {
            series.streak_start_ms = None;
            let last_held = series.last_held_ms.unwrap_or(i64::MIN / 2);
            if series.firing.is_some() && start - last_held > compiled.keep_firing_for_ms {
                let mut event = series.firing.take().expect("checked above");
                event.state = AlertState::Resolved;
                event.ends_at = Some(rfc3339(last_held + window_ms));
                event.window = rfc3339(start);
                if let Some(observation) = seen.get(key) {
                    event.value = observation.value;
                }
                event.summary = format!("resolved: {}", event.summary);
                events.push(event);
            }
        }
    }
    // Forget series with nothing to remember: not firing, not pending, no baseline left.
    let oldest = start - compiled.trailing_ms;
    state.series.retain(|_, series| {
        while series.history.front().is_some_and(|(at, _)| *at < oldest) {
            series.history.pop_front();
        }
        series.firing.is_some() || series.streak_start_ms.is_some() || !series.history.is_empty()
    });
}
