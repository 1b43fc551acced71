//! The scripted incidents: where they fall in the simulated time span and what they affect.
//!
//! Placement depends only on `start_ms` and `duration_ms` (never on the seed), so a test or a demo can
//! compute the windows up front with [`incidents`] and check that alerts fire inside them.

use serde::Serialize;

use crate::model::INCIDENT_CDN;
use crate::SimConfig;

const MINUTE_MS: u64 = 60_000;
/// The CDN stall incident lasts this long, unless the simulation is short (see [`incidents`]).
const CDN_INCIDENT_MS: u64 = 10 * MINUTE_MS;
/// The publisher's network jitters for this long.
const JITTER_MS: u64 = MINUTE_MS;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// One CDN (`cdn`) stalls far more often and for longer, for every room it serves.
    CdnStall,
    /// The publisher of one room (`room_id`) has a network hiccup: the push stalls, every viewer of the
    /// room stalls briefly, and about half of them leave and re-join within seconds, on every CDN.
    PublisherJitter,
}

impl IncidentKind {
    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::CdnStall => "cdn_stall",
            IncidentKind::PublisherJitter => "publisher_jitter",
        }
    }
}

/// One scripted incident: a kind, a window of simulated time and what it hits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incident {
    /// What went wrong.
    pub kind: IncidentKind,
    /// Start of the window, epoch ms (inclusive).
    pub start_ms: u64,
    /// End of the window, epoch ms (exclusive).
    pub end_ms: u64,
    /// The CDN affected, for [`IncidentKind::CdnStall`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cdn: Option<String>,
    /// The room affected, for [`IncidentKind::PublisherJitter`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
}

impl Incident {
    /// Whether `ts` falls inside the window.
    pub fn contains(&self, ts: u64) -> bool {
        (self.start_ms..self.end_ms).contains(&ts)
    }
}

/// The incidents a simulation with this config plays out, in time order; empty when
/// `config.incidents` is off.
///
/// - A CDN stall incident on `cdn-b` starting at 35 % of the duration (rounded down to a whole minute
///   after `start_ms`), lasting 10 minutes or a fifth of the duration, whichever is shorter.
/// - A publisher network jitter in the most popular room, `room-0001`, starting at 65 % of the duration
///   (rounded down to a whole minute) and lasting one minute.
///
/// Windows are clamped to the simulated span; an incident whose window would be empty is left out.
pub fn incidents(config: &SimConfig) -> Vec<Incident> {
    if !config.incidents {
        return Vec::new();
    }
    let span_end = config.start_ms.saturating_add(config.duration_ms);
    let at_share = |percent: u64| {
        let offset = config.duration_ms / 100 * percent + config.duration_ms % 100 * percent / 100;
        config.start_ms + offset / MINUTE_MS * MINUTE_MS
    };
    let mut found = Vec::with_capacity(2);

    let cdn_start = at_share(35);
    let cdn_end = cdn_start
        .saturating_add(CDN_INCIDENT_MS.min(config.duration_ms / 5))
        .min(span_end);
    if cdn_end > cdn_start {
        found.push(Incident {
            kind: IncidentKind::CdnStall,
            start_ms: cdn_start,
            end_ms: cdn_end,
            cdn: Some(INCIDENT_CDN.to_string()),
            room_id: None,
        });
    }

    let jitter_start = at_share(65);
    let jitter_end = jitter_start.saturating_add(JITTER_MS).min(span_end);
    if jitter_end > jitter_start {
        found.push(Incident {
            kind: IncidentKind::PublisherJitter,
            start_ms: jitter_start,
            end_ms: jitter_end,
            cdn: None,
            room_id: Some("room-0001".to_string()),
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(duration_ms: u64) -> SimConfig {
        SimConfig {
            start_ms: 1_763_800_000_000,
            duration_ms,
            ..SimConfig::default()
        }
    }

    #[test]
    fn one_hour_places_both_incidents_on_minute_boundaries() {
        let found = incidents(&config(3_600_000));
        assert_eq!(found.len(), 2);
        let start = 1_763_800_000_000;
        assert_eq!(found[0].kind, IncidentKind::CdnStall);
        assert_eq!(found[0].start_ms, start + 21 * MINUTE_MS);
        assert_eq!(found[0].end_ms, start + 31 * MINUTE_MS);
        assert_eq!(found[0].cdn.as_deref(), Some("cdn-b"));
        assert_eq!(found[1].kind, IncidentKind::PublisherJitter);
        assert_eq!(found[1].start_ms, start + 39 * MINUTE_MS);
        assert_eq!(found[1].end_ms, start + 40 * MINUTE_MS);
        assert_eq!(found[1].room_id.as_deref(), Some("room-0001"));
    }

    #[test]
    fn short_runs_shrink_the_cdn_incident_and_clamp_to_the_span() {
        let found = incidents(&config(10 * MINUTE_MS));
        assert_eq!(found[0].end_ms - found[0].start_ms, 2 * MINUTE_MS);
        let tiny = incidents(&config(30_000));
        let span_end = 1_763_800_000_000 + 30_000;
        assert!(tiny.iter().all(|incident| incident.end_ms <= span_end), "{tiny:?}");
    }

    #[test]
    fn incidents_off_means_none() {
        let off = SimConfig {
            incidents: false,
            ..config(3_600_000)
        };
        assert!(incidents(&off).is_empty());
    }
}
