//! The demo's alerts against the simulator's scripted incidents, and the clock formats it prints.

use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use qoe_alert::{AlertEvent, AlertState, Level};
use qoe_simulator::{Incident, IncidentKind};

pub(super) fn read_alerts(path: &Path) -> anyhow::Result<Vec<AlertEvent>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).with_context(|| format!("{}: an alert event", path.display())))
        .collect()
}

/// Prints the firing alerts next to the scripted incidents; returns what does not match: an
/// incident without its alert (at the right place, starting inside the incident), or an alert that
/// is not one of the incidents.
pub(super) fn print_alerts(events: &[AlertEvent], incidents: &[Incident]) -> Vec<String> {
    let firing: Vec<&AlertEvent> = events
        .iter()
        .filter(|event| event.state == AlertState::Firing)
        .collect();
    println!("alerts     {} raised", firing.len());
    for event in &firing {
        let resolved = events
            .iter()
            .find(|other| other.id == event.id && other.state == AlertState::Resolved)
            .and_then(|other| other.ends_at.clone())
            .unwrap_or_else(|| "still firing".to_string());
        println!(
            "  {:<16} {:<10} {:<12} {} .. {}  {}",
            event.rule,
            event.localisation.level.as_str(),
            event.localisation.target,
            event.starts_at,
            resolved,
            event.summary
        );
    }
    let mut problems = Vec::new();
    let mut matched = vec![false; firing.len()];
    for incident in incidents {
        let (rule, level, target) = match incident.kind {
            IncidentKind::CdnStall => ("cdn-stall", Level::Cdn, incident.cdn.clone().unwrap_or_default()),
            IncidentKind::PublisherJitter => (
                "viewer-reentry",
                Level::Publisher,
                incident.room_id.clone().unwrap_or_default(),
            ),
        };
        let found = firing.iter().zip(&matched).position(|(event, already)| {
            !already
                && event.rule == rule
                && event.localisation.level == level
                && event.localisation.target == target
                && starts_ms(event).is_some_and(|starts| incident.contains(starts))
        });
        match found {
            Some(index) => matched[index] = true,
            None => problems.push(format!(
                "no {rule} alert at {} {target} for: {}",
                level.as_str(),
                describe_incident(incident)
            )),
        }
    }
    for (event, matched) in firing.iter().zip(matched) {
        if !matched {
            problems.push(format!(
                "an alert that is not a scripted incident: {} at {} {} from {}",
                event.rule,
                event.localisation.level.as_str(),
                event.localisation.target,
                event.starts_at
            ));
        }
    }
    problems
}

fn starts_ms(event: &AlertEvent) -> Option<u64> {
    DateTime::parse_from_rfc3339(&event.starts_at)
        .ok()
        .and_then(|time| u64::try_from(time.timestamp_millis()).ok())
}

pub(super) fn describe_incident(incident: &Incident) -> String {
    let span = format!("{} .. {} UTC", clock(incident.start_ms), clock(incident.end_ms));
    match incident.kind {
        IncidentKind::CdnStall => format!("{span}: stalls on CDN {}", incident.cdn.as_deref().unwrap_or("?")),
        IncidentKind::PublisherJitter => format!(
            "{span}: the publisher of {} loses its network; its viewers leave and come back on every CDN",
            incident.room_id.as_deref().unwrap_or("?")
        ),
    }
}

fn utc(ms: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX)).unwrap_or_default()
}

pub(super) fn clock(ms: u64) -> String {
    utc(ms).format("%Y-%m-%d %H:%M").to_string()
}

pub(super) fn day(ms: u64) -> chrono::NaiveDate {
    utc(ms).date_naive()
}
