//! Alerting as an output: [`AlertOutput`] feeds each window's final documents to a
//! [`qoe_alert::Evaluator`] and writes the alert events it raises to its sinks: NDJSON files,
//! Elasticsearch (the `qoe-alerts` indices, `_id` = the episode id, so the resolved event replaces
//! the firing one), a Kafka topic (`qoe.alerts`, keyed by the series fingerprint) and an
//! Alertmanager-compatible webhook.
//!
//! Guarantee: like any output, `write` returns `Ok` only when every sink took the events, so the job
//! acknowledges the window only then. With a state file, the evaluator's snapshot is saved after the
//! events are written: a restart continues the `for` durations and baselines, and windows it had
//! evaluated are not evaluated again. A crash between the events and the snapshot sends the same
//! events again, with the same ids: Elasticsearch overwrites them and Alertmanager-style receivers
//! de-duplicate by labels, while the NDJSON file and the Kafka topic get them twice (readers keep the
//! last line or record of each id). Without a state file, a restart begins with no history.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use qoe_alert::{webhook_payloads, AlertEvent, Evaluator, RuleSet, Snapshot, WebhookOptions};
use qoe_es::{BulkDoc, EsConfig, EsMetrics, EsSink};
use qoe_rollup::Emission;
use tokio::runtime::Handle;

use crate::error::StreamError;
use crate::output::KafkaOutput;
use crate::output::Output;

/// How many times a webhook delivery is tried before the write fails.
const WEBHOOK_ATTEMPTS: u32 = 6;

/// Where alert events go.
pub enum AlertSink {
    /// `ndjson:DIR`: appended to `DIR/alerts.ndjson`, synced before `write` returns.
    Ndjson(PathBuf),
    /// `es:URL`: the `qoe-alerts` indices.
    Es(Box<EsSink>),
    /// `kafka:TOPIC`: one record per event, keyed by the series fingerprint.
    Kafka(KafkaOutput),
    /// `webhook:URL`: Alertmanager webhook payloads (version 4), one POST per rule.
    Webhook(String),
}

impl AlertSink {
    /// The Elasticsearch sink of alert events: template `qoe-alerts-v1` with its own mappings.
    pub async fn elasticsearch(config: EsConfig, metrics: EsMetrics) -> Result<AlertSink, StreamError> {
        let sink = EsSink::new(config, metrics)?;
        sink.install(qoe_es::template::alert_mappings()).await?;
        Ok(AlertSink::Es(Box::new(sink)))
    }

    fn name(&self) -> String {
        match self {
            AlertSink::Ndjson(dir) => format!("ndjson:{}", dir.display()),
            AlertSink::Es(sink) => format!("es:{}", sink.config().url),
            AlertSink::Kafka(output) => output.name(),
            AlertSink::Webhook(url) => format!("webhook:{url}"),
        }
    }
}

/// The alerting output.
pub struct AlertOutput {
    evaluator: Evaluator,
    sinks: Vec<AlertSink>,
    state: Option<PathBuf>,
    webhook: WebhookOptions,
    http: reqwest::Client,
    runtime: Handle,
    events_written: u64,
}

impl AlertOutput {
    /// An evaluator of `rules`, restored from `state` if the file exists (and saved there after each
    /// write). Uses the current Tokio runtime for its requests.
    pub fn new(rules: RuleSet, sinks: Vec<AlertSink>, state: Option<PathBuf>) -> Result<Self, StreamError> {
        let evaluator = match state.as_deref().filter(|path| path.exists()) {
            None => Evaluator::new(rules),
            Some(path) => {
                let text = std::fs::read(path).map_err(|error| StreamError::io(path, error))?;
                let snapshot: Snapshot =
                    serde_json::from_slice(&text).map_err(|source| StreamError::CheckpointFormat {
                        path: path.display().to_string(),
                        what: "an alert state file",
                        source,
                    })?;
                Evaluator::restore(rules, snapshot).map_err(|source| StreamError::AlertState {
                    path: path.display().to_string(),
                    source,
                })?
            }
        };
        Ok(AlertOutput {
            evaluator,
            sinks,
            state,
            webhook: WebhookOptions {
                receiver: "qoe".to_string(),
                ..WebhookOptions::default()
            },
            http: reqwest::Client::new(),
            runtime: Handle::current(),
            events_written: 0,
        })
    }

    /// Alert events this process has written to every sink.
    pub fn events_written(&self) -> u64 {
        self.events_written
    }

    fn deliver(&mut self, events: &[AlertEvent]) -> Result<(), StreamError> {
        for sink in &mut self.sinks {
            let name = sink.name();
            let result = match sink {
                AlertSink::Ndjson(dir) => append_ndjson(dir, events),
                AlertSink::Es(es) => {
                    let mut docs = Vec::new();
                    for event in events {
                        let starts = qoe_schemas::time::parse_rfc3339_utc(&event.starts_at).ok_or_else(|| {
                            StreamError::AlertEvent {
                                id: event.id.clone(),
                                problem: format!("starts_at {:?} is not RFC 3339 UTC", event.starts_at),
                            }
                        })?;
                        docs.push(BulkDoc::new(es.config().index_for(starts), event.id.clone(), event)?);
                    }
                    self.runtime
                        .block_on(es.write(&docs))
                        .map(|_| ())
                        .map_err(StreamError::from)
                }
                AlertSink::Kafka(output) => {
                    let mut records = Vec::new();
                    for event in events {
                        let payload = serde_json::to_vec(event).map_err(|source| StreamError::Encode {
                            what: format!("alert {}", event.id),
                            source,
                        })?;
                        records.push((event.fingerprint.clone(), payload));
                    }
                    output.send_all(records)
                }
                AlertSink::Webhook(url) => {
                    let payloads = webhook_payloads(events, &self.webhook);
                    self.runtime.block_on(post_webhooks(&self.http, url, &payloads))
                }
            };
            if let Err(error) = result {
                tracing::error!(sink = %name, %error, "alert sink failed");
                return Err(error);
            }
        }
        Ok(())
    }

    fn save_state(&self) -> Result<(), StreamError> {
        let Some(path) = &self.state else {
            return Ok(());
        };
        let text = serde_json::to_vec(&self.evaluator.snapshot()).map_err(|source| StreamError::Encode {
            what: format!("the alert state for {}", path.display()),
            source,
        })?;
        let temporary = path.with_extension("tmp");
        let mut file = std::fs::File::create(&temporary).map_err(|error| StreamError::io(&temporary, error))?;
        file.write_all(&text)
            .map_err(|error| StreamError::io(&temporary, error))?;
        file.sync_all().map_err(|error| StreamError::io(&temporary, error))?;
        std::fs::rename(&temporary, path).map_err(|error| StreamError::io(path, error))?;
        let parent = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(parent)
            .and_then(|directory| directory.sync_all())
            .map_err(|error| StreamError::io(parent, error))
    }
}

impl Output for AlertOutput {
    fn name(&self) -> String {
        let sinks: Vec<String> = self.sinks.iter().map(AlertSink::name).collect();
        format!("alerts[{}]", sinks.join(","))
    }

    fn write(&mut self, emissions: &[Emission]) -> Result<(), StreamError> {
        let mut events = Vec::new();
        let mut evaluated = false;
        for emission in emissions.iter().filter(|emission| emission.is_final) {
            let raised = self
                .evaluator
                .observe_emission(emission)
                .map_err(|source| StreamError::Alert {
                    window_start_ms: emission.window_start_ms,
                    source,
                })?;
            events.extend(raised);
            evaluated = true;
        }
        if !events.is_empty() {
            for event in &events {
                tracing::info!(rule = %event.rule, state = event.state.as_str(), target = %event.localisation.target, "alert");
            }
            self.deliver(&events)?;
            self.events_written += events.len() as u64;
        }
        if evaluated {
            self.save_state()?;
        }
        Ok(())
    }
}

fn append_ndjson(dir: &Path, events: &[AlertEvent]) -> Result<(), StreamError> {
    std::fs::create_dir_all(dir).map_err(|error| StreamError::io(dir, error))?;
    let path = dir.join("alerts.ndjson");
    let mut text = Vec::new();
    for event in events {
        serde_json::to_writer(&mut text, event).map_err(|error| StreamError::io(&path, error.into()))?;
        text.push(b'\n');
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|error| StreamError::io(&path, error))?;
    file.write_all(&text).map_err(|error| StreamError::io(&path, error))?;
    file.sync_data().map_err(|error| StreamError::io(&path, error))
}

async fn post_webhooks(
    http: &reqwest::Client,
    url: &str,
    payloads: &[qoe_alert::WebhookPayload],
) -> Result<(), StreamError> {
    for payload in payloads {
        let body = serde_json::to_vec(payload).map_err(|source| StreamError::Encode {
            what: "a webhook payload".to_string(),
            source,
        })?;
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let sent = http
                .post(url)
                .header("content-type", "application/json")
                .body(body.clone())
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            let (problem, source) = match sent {
                Ok(response) if response.status().is_success() => break,
                Ok(response) if response.status().is_client_error() && response.status().as_u16() != 429 => {
                    return Err(StreamError::Webhook {
                        url: url.to_string(),
                        problem: format!("status {}", response.status()),
                        source: None,
                    });
                }
                Ok(response) => (format!("status {}", response.status()), None),
                Err(error) => ("no answer".to_string(), Some(error)),
            };
            if attempt >= WEBHOOK_ATTEMPTS {
                return Err(StreamError::Webhook {
                    url: url.to_string(),
                    problem: format!("{problem} after {attempt} attempts"),
                    source,
                });
            }
            tracing::warn!(%url, %problem, error = ?source, "alert webhook failed: retrying");
            tokio::time::sleep(delay).await;
            delay *= 2;
            attempt += 1;
        }
    }
    Ok(())
}
