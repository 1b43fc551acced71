//! `es:URL`: rollup documents into Elasticsearch through [`qoe_es::EsSink`]: the daily index of
//! each window's date, the document id of [`qoe_rollup::RollupDoc::id`], so an early result is
//! replaced by its final one and a replay overwrites what it wrote before.

use qoe_es::{BulkDoc, EsConfig, EsMetrics, EsSink};
use qoe_rollup::{Emission, RollupDoc};
use tokio::runtime::Handle;

use crate::error::StreamError;
use crate::output::Output;

/// The Elasticsearch output. [`Output::write`] blocks its thread on the sink's requests: call it
/// from a blocking thread (`spawn_blocking`), as the stream job does, never from async code.
pub struct EsOutput {
    sink: EsSink,
    runtime: Handle,
}

impl EsOutput {
    /// Connects and installs the template (and the lifecycle policy), retrying while the cluster
    /// is unreachable; the output then uses the current Tokio runtime for its requests.
    /// `metrics` may be shared with other sinks of the process (they count together).
    pub async fn connect(config: EsConfig, metrics: EsMetrics) -> Result<Self, StreamError> {
        let sink = EsSink::new(config, metrics)?;
        sink.install(qoe_es::template::rollup_mappings()).await?;
        Ok(EsOutput {
            sink,
            runtime: Handle::current(),
        })
    }

    /// Writes documents that come with their window start (for the index name).
    pub fn write_docs<'a>(&self, docs: impl IntoIterator<Item = (i64, &'a RollupDoc)>) -> Result<usize, StreamError> {
        let config = self.sink.config();
        let mut batch = Vec::new();
        for (window_start_ms, doc) in docs {
            batch.push(BulkDoc::new(config.index_for(window_start_ms), doc.id(), doc)?);
        }
        if batch.is_empty() {
            return Ok(0);
        }
        let report = self.runtime.block_on(self.sink.write(&batch))?;
        Ok(report.written)
    }
}

impl Output for EsOutput {
    fn name(&self) -> String {
        format!("es:{}", self.sink.config().url)
    }

    fn write(&mut self, emissions: &[Emission]) -> Result<(), StreamError> {
        let docs = emissions
            .iter()
            .flat_map(|emission| emission.docs.iter().map(|doc| (emission.window_start_ms, doc)));
        self.write_docs(docs).map(|_| ())
    }
}
