//! # qoe-alert: alert rules over minute rollups, without IO
//!
//! The alerting core of `qoe stream --alert-rules FILE` and `qoe alert`, in the manner of a sans-IO
//! crate: final rollup documents v1 ([`qoe_rollup::RollupDoc`]) go in window by window, alert events
//! ([`AlertEvent`]) come out, and the whole state is a serde [`Snapshot`]. Reading `qoe.rollups.v1`
//! or the engine, writing the `qoe-alerts` index, the `qoe.alerts` topic and the Alertmanager
//! webhook ([`webhook_payloads`]), and persisting the snapshot belong to the driver.
//!
//! ## Rules ([`RuleSet::from_toml`], [`DEFAULT_RULES`]; every field: `README.md`)
//! - **threshold**: `metric op value` on a series (a grain's documents summed per `by` dimensions,
//!   optionally filtered by `where`), held in every window for `for`; windows below `min_volume`
//!   count as no data.
//! - **baseline**: the metric beyond `median ± k·1.4826·MAD` (or `× / ÷ ratio`) of the same series'
//!   values over the `trailing` windows before, once `min_history` windows are there.
//! - **incident**: the joint QoE/QoS detector (below).
//!
//! ## Evaluation ([`Evaluator`])
//! [`Evaluator::observe`] buffers final documents; [`Evaluator::advance`] evaluates each buffered
//! window up to the given one in window order (a window without any document is skipped, so a
//! pipeline gap freezes the state instead of resolving everything). Per rule and series (rule name +
//! labels): the alert **fires** in the window in which the condition has held for `for` (counted in
//! whole windows, the current one included), and **resolves** in the first window more than
//! `keep_firing_for` after the last window in which it held; a series missing from a window, or
//! below its volume floor, does not hold there. Each transition is returned once. The series
//! `fingerprint` hashes the rule and labels; the episode `id` hashes the fingerprint and the
//! episode's first window, so the firing and the resolved event share an id (the resolved document
//! overwrites the firing one in `qoe-alerts`) and a replay from an older snapshot writes the same
//! ids again. A document for a window already evaluated is ignored (`observe` returns `false`).
//!
//! ## The incident detector
//! Viewers who leave and re-join in the same minute are trying to fix playback: a technical, not a
//! content, problem (a Kuaishou talk, ArchSummit 2017; `stream-jobs/DESIGN.md` §3). Every series
//! below has a trailing baseline of its joins and of its leaves (median and MAD over `trailing`,
//! judged once `min_history` windows are there); it **spikes** when joins and leaves are *both* at
//! or above `max(median + k·1.4826·MAD, factor·median, median + min_excess)` (`min_part_excess` for
//! parts). Per window:
//! 1. **Rooms** (grain `room`, so only rooms over the engine's viewer threshold): a room spikes on
//!    its joins and leaves summed over its CDNs. Its serving CDNs (at least `min_sessions` active
//!    sessions, enough history) *take part* when their own excess is at least half their share (by
//!    sessions) of the room's excess, for joins and leaves. All serving CDNs (at least two) take
//!    part → **publisher** (target: the room). Exactly one → **cdn**; and if exactly one of that
//!    CDN's serving edge nodes (grain `edge`, over all rooms) spikes → **edge**. Otherwise → **room**
//!    (one CDN only serves the room, or a subset took part).
//! 2. **Fleet** (`fleet = true`; grains `cdn` and `edge`, over all rooms): per CDN, joins and
//!    leaves minus the excess of the rooms of step 1 on that CDN (the room grain has the CDN). If
//!    every serving CDN (at least two) spikes: one ISP spiking alone → **network** `isp=…`, else one
//!    region alone → **network** `region=…`, else **service** (upstream of every CDN). Otherwise, per
//!    CDN: one edge node spiking alone among its serving edges → **edge**, else a spiking CDN →
//!    **cdn**; with no CDN spiking, one ISP or region alone → **network**. ISP, region and edge series
//!    cannot be corrected for a room's re-entries, so they are read only in windows (edges: CDNs)
//!    without one.
//!
//! It cannot localise to an ISP or region *within* a room (the room grain has no such dimension),
//! a platform, or an edge node in a window in which a room re-entered on its CDN, except through
//! that room's step 1; it sees only rooms over the viewer threshold and beacons that carry `cdn`,
//! `isp`, `region` and `edge_ip`.
//!
//! ```
//! use qoe_alert::{AlertState, Evaluator, Level, RuleSet};
//! use qoe_rollup::{Grain, RollupDoc};
//!
//! let rules = RuleSet::from_toml(r#"
//! [[rule]]
//! name = "cdn-stall"
//! kind = "threshold"
//! grain = "cdn"
//! by = ["cdn"]
//! metric = "stall_ratio"
//! op = ">"
//! value = 0.03
//! for = "2m"
//! "#).unwrap();
//! let mut evaluator = Evaluator::new(rules);
//! let minute = |m: i64, stall_ms: u64| RollupDoc {
//!     timestamp: qoe_alert::rfc3339(1_763_800_020_000 + m * 60_000),
//!     window_s: 60,
//!     grain: Grain::Cdn,
//!     is_final: true,
//!     cdn: Some("cdn-b".into()),
//!     stall_ms,
//!     watch_ms: 100_000 - stall_ms,
//!     ..RollupDoc::default()
//! };
//! let mut events = Vec::new();
//! for (m, stall_ms) in [(0, 1_000), (1, 9_000), (2, 9_000), (3, 1_000)] {
//!     evaluator.observe(&minute(m, stall_ms)).unwrap();
//!     events.extend(evaluator.advance(1_763_800_020_000 + m * 60_000));
//! }
//! assert_eq!(events.len(), 2);
//! assert_eq!((events[0].state, events[0].localisation.level), (AlertState::Firing, Level::Cdn));
//! assert_eq!(events[0].starts_at, "2025-11-22T08:28:00Z");
//! assert_eq!((events[1].state, events[1].id == events[0].id), (AlertState::Resolved, true));
//! ```

mod evaluator;
mod event;
mod incident;
mod metric;
mod observation;
mod rules;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_incident;

pub use evaluator::{Evaluator, Snapshot};
pub use event::{
    rfc3339, webhook_payloads, AlertEvent, AlertState, Level, Localisation, WebhookAlert, WebhookOptions,
    WebhookPayload, ALERTS_INDEX, ALERTS_TOPIC,
};
pub use rules::{
    parse_duration, BaselineRule, Deviation, Direction, IncidentRule, MinVolume, Op, Rule, RuleSet, Severity,
    ThresholdRule, DEFAULT_RULES,
};

/// What the rule file parser refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The file is not TOML of the expected shape.
    #[error("rule file: {0}")]
    Toml(String),
    /// A rule is wrong: `rule` is its quoted name (or `#<position>` without one).
    #[error("rule {rule}: {problem}")]
    Rule {
        /// The rule.
        rule: String,
        /// The field and what is wrong with it.
        problem: String,
    },
}

/// What the evaluator refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    /// Alerts are evaluated on final documents only.
    #[error("document {0}: not final (alerts read final documents only)")]
    NotFinal(String),
    /// The document's `@timestamp` is not RFC 3339 UTC.
    #[error("@timestamp \"{0}\": not an RFC 3339 UTC time like 2026-11-20T09:31:00Z")]
    Timestamp(String),
    /// Documents of different window lengths.
    #[error("window_s {got_s}: the evaluator runs on {expected_s} s windows")]
    WindowLength {
        /// The window length so far.
        expected_s: i64,
        /// The document's.
        got_s: i64,
    },
    /// A snapshot the evaluator cannot continue from.
    #[error("snapshot: {0}")]
    Snapshot(String),
}
