//! Alert events: the `qoe-alerts` Elasticsearch document (also the `qoe.alerts` record) and the
//! Alertmanager webhook payload (version 4) built from them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

/// The Elasticsearch index the driver writes events to (by [`AlertEvent::id`]).
pub const ALERTS_INDEX: &str = "qoe-alerts";
/// The Kafka topic the driver writes events to (keyed by [`AlertEvent::fingerprint`]).
pub const ALERTS_TOPIC: &str = "qoe.alerts";

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition holds (for long enough).
    Firing,
    /// The condition stopped holding (for longer than `keep_firing_for`).
    Resolved,
}

impl AlertState {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// Where the problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// A room's publisher (its push or its network): `target` is the room id.
    Publisher,
    /// One CDN: `target` is the CDN.
    Cdn,
    /// One edge node: `target` is its IP (the CDN is in the labels).
    Edge,
    /// One ISP or region: `target` is `isp=<isp>` or `region=<region>`.
    Network,
    /// A room, without a narrower place (it is served by one CDN only, or by a subset of them).
    Room,
    /// Upstream of every CDN (ingest, origin, the app): `target` is `*`.
    Service,
    /// The rule's series itself (threshold and baseline rules whose series is not one of the above).
    Series,
}

impl Level {
    /// Every level, for exhaustive checks.
    pub const ALL: [Level; 7] = [
        Level::Publisher,
        Level::Cdn,
        Level::Edge,
        Level::Network,
        Level::Room,
        Level::Service,
        Level::Series,
    ];

    /// The level's name in alert events and documents (`publisher`, `cdn`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Publisher => "publisher",
            Level::Cdn => "cdn",
            Level::Edge => "edge",
            Level::Network => "network",
            Level::Room => "room",
            Level::Service => "service",
            Level::Series => "series",
        }
    }
}

/// The place an alert points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Localisation {
    /// What kind of place.
    pub level: Level,
    /// Which one.
    pub target: String,
}

/// One transition of an alert: the `qoe-alerts` document and the `qoe.alerts` record.
///
/// `id` names the episode (rule, series labels, first window of the episode): its resolved event has
/// the same `id` as its firing event, so in Elasticsearch (indexed by `_id` = `id`) the resolved
/// document replaces the firing one, and a replay after a crash writes the same ids again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertEvent {
    /// Episode id: 32 hex digits over the fingerprint and `starts_at`.
    pub id: String,
    /// Series id: 16 hex digits of xxh3-64 over the rule name and the labels (stable across episodes).
    pub fingerprint: String,
    /// The rule's name.
    pub rule: String,
    /// The rule's kind: `threshold`, `baseline` or `incident`.
    pub kind: String,
    /// Firing or resolved.
    pub state: AlertState,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Start of the first window in which the condition held, RFC 3339 UTC.
    pub starts_at: String,
    /// For a resolved event, the end of the last window in which the condition held, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    /// Start of the window whose evaluation made this transition, RFC 3339 UTC.
    pub window: String,
    /// Window length, seconds.
    pub window_s: u32,
    /// The grain the rule read (`room` and `cdn` for the incident detector: see `labels`).
    pub grain: String,
    /// The series' dimensions (bounded: CDN, edge IP, ISP, region, platform, room id; never a session
    /// or user id), plus `level` and `target` for incidents.
    pub labels: BTreeMap<String, String>,
    /// Where the problem is.
    pub localisation: Localisation,
    /// The value that made the transition (for a resolved event, the last value seen, if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The bound the value was compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// One line for people.
    pub summary: String,
}

/// A 16-hex-digit series fingerprint over the rule name and labels (in key order).
pub(crate) fn fingerprint(rule: &str, labels: &BTreeMap<String, String>) -> String {
    let mut text = format!("{}:{rule}", rule.len());
    for (key, value) in labels {
        text.push_str(&format!("|{}:{key}={}:{value}", key.len(), value.len()));
    }
    format!("{:016x}", xxh3_64(text.as_bytes()))
}

/// The episode id: 32 hex digits over the fingerprint and the episode's first window.
pub(crate) fn episode_id(fingerprint: &str, starts_ms: i64) -> String {
    let text = format!("{fingerprint}|{starts_ms}");
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

/// Epoch ms as RFC 3339 UTC with whole seconds (`2025-11-22T08:26:00Z`).
pub fn rfc3339(ms: i64) -> String {
    qoe_schemas::time::rfc3339_utc(ms.div_euclid(1000) * 1000)
}

/// Where the webhook payload says it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebhookOptions {
    /// The `receiver` name.
    pub receiver: String,
    /// `externalURL`: where people can see the alerts (e.g. the Kibana `qoe-alerts` view).
    pub external_url: String,
    /// `generatorURL` of every alert: this prefix plus `?rule=<name>` (empty: none).
    pub generator_url: String,
}

/// The Alertmanager webhook body (`version` 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookPayload {
    /// Always `"4"`.
    pub version: String,
    /// The group's key: `{}:{alertname="<rule>"}`.
    pub group_key: String,
    /// Alerts left out of the payload (always 0).
    pub truncated_alerts: u64,
    /// `firing` if any alert in the payload fires, else `resolved`.
    pub status: String,
    /// The receiver name.
    pub receiver: String,
    /// The labels the group is grouped by (`alertname`).
    pub group_labels: BTreeMap<String, String>,
    /// Labels every alert of the payload has, with the same value.
    pub common_labels: BTreeMap<String, String>,
    /// Annotations every alert of the payload has, with the same value.
    pub common_annotations: BTreeMap<String, String>,
    /// Where people can see the alerts.
    #[serde(rename = "externalURL")]
    pub external_url: String,
    /// The alerts.
    pub alerts: Vec<WebhookAlert>,
}

/// One alert of a [`WebhookPayload`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookAlert {
    /// `firing` or `resolved`.
    pub status: String,
    /// `alertname`, `severity`, `level`, `target` and the series labels.
    pub labels: BTreeMap<String, String>,
    /// `summary`, `id` and `value`.
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339; `0001-01-01T00:00:00Z` while firing, as Alertmanager sends it.
    pub ends_at: String,
    /// A link to the rule.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// The series fingerprint.
    pub fingerprint: String,
}

impl AlertEvent {
    /// The Alertmanager labels: `alertname` (the rule), `severity`, `level`, `target` and the
    /// series' labels. Alertmanager de-duplicates alerts by these.
    pub fn alertmanager_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert("alertname".to_string(), self.rule.clone());
        labels.insert("severity".to_string(), self.severity.clone());
        labels.insert("level".to_string(), self.localisation.level.as_str().to_string());
        labels.insert("target".to_string(), self.localisation.target.clone());
        labels
    }
}

/// One webhook payload per rule among `events` (Alertmanager groups by `alertname`), in rule order
/// of first appearance.
///
/// ```
/// use qoe_alert::{webhook_payloads, WebhookOptions};
/// assert!(webhook_payloads(&[], &WebhookOptions::default()).is_empty());
/// ```
pub fn webhook_payloads(events: &[AlertEvent], options: &WebhookOptions) -> Vec<WebhookPayload> {
    let mut groups: Vec<(&str, Vec<&AlertEvent>)> = Vec::new();
    for event in events {
        match groups.iter_mut().find(|(rule, _)| *rule == event.rule) {
            Some((_, members)) => members.push(event),
            None => groups.push((&event.rule, vec![event])),
        }
    }
    groups
        .into_iter()
        .map(|(rule, members)| {
            let alerts: Vec<WebhookAlert> = members
                .iter()
                .map(|event| {
                    let mut annotations = BTreeMap::new();
                    annotations.insert("summary".to_string(), event.summary.clone());
                    annotations.insert("id".to_string(), event.id.clone());
                    if let Some(value) = event.value {
                        annotations.insert("value".to_string(), value.to_string());
                    }
                    WebhookAlert {
                        status: event.state.as_str().to_string(),
                        labels: event.alertmanager_labels(),
                        annotations,
                        starts_at: event.starts_at.clone(),
                        ends_at: match (&event.state, &event.ends_at) {
                            (AlertState::Resolved, Some(ends_at)) => ends_at.clone(),
                            _ => "0001-01-01T00:00:00Z".to_string(),
                        },
                        generator_url: if options.generator_url.is_empty() {
                            String::new()
                        } else {
                            format!("{}?rule={rule}", options.generator_url)
                        },
                        fingerprint: event.fingerprint.clone(),
                    }
                })
                .collect();
            let common = |pick: fn(&WebhookAlert) -> &BTreeMap<String, String>| {
                let mut common = pick(&alerts[0]).clone();
                common.retain(|key, value| alerts.iter().all(|alert| pick(alert).get(key) == Some(value)));
                common
            };
            let escaped = rule.replace('\\', "\\\\").replace('"', "\\\"");
            WebhookPayload {
                version: "4".to_string(),
                group_key: format!("{{}}:{{alertname=\"{escaped}\"}}"),
                truncated_alerts: 0,
                status: if alerts.iter().any(|alert| alert.status == "firing") {
                    "firing"
                } else {
                    "resolved"
                }
                .to_string(),
                receiver: options.receiver.clone(),
                group_labels: BTreeMap::from([("alertname".to_string(), rule.to_string())]),
                common_labels: common(|alert| &alert.labels),
                common_annotations: common(|alert| &alert.annotations),
                external_url: options.external_url.clone(),
                alerts,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_names_are_the_serialized_names() {
        for level in Level::ALL {
            assert_eq!(serde_json::to_value(level).unwrap(), level.as_str(), "{level:?}");
        }
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_763_799_960_000), "2025-11-22T08:26:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn fingerprints_depend_on_every_label() {
        let labels = |cdn: &str| BTreeMap::from([("cdn".to_string(), cdn.to_string())]);
        let a = fingerprint("r", &labels("cdn-a"));
        assert_eq!(a.len(), 16);
        assert_eq!(a, fingerprint("r", &labels("cdn-a")));
        assert_ne!(a, fingerprint("r", &labels("cdn-b")));
        assert_ne!(a, fingerprint("s", &labels("cdn-a")));
        assert_ne!(episode_id(&a, 0), episode_id(&a, 60_000));
    }
}
