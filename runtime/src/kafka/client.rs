//! [`ClientSpec`]: one client's properties, layered as the module's precedence rule says, checked,
//! and turned into a librdkafka client.

use std::borrow::Cow;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfig, FromClientConfigAndContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::options::KafkaOptions;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KafkaClientError {
    /// A user option names a property the pipeline sets itself.
    #[error("kafka option \"{key}={value}\": set by {owner}, remove it from the pass-through options")]
    Refused {
        /// The property, as the user wrote it.
        key: String,
        /// The user's value.
        value: String,
        /// The setting that owns the property, or why the pipeline fixes it.
        owner: String,
    },
    /// librdkafka refused the configuration (an unknown property, a bad value).
    #[error("creating {client}")]
    Create {
        /// Which client.
        client: &'static str,
        /// librdkafka's error, which names the property.
        #[source]
        source: Box<KafkaError>,
    },
    /// A request to the cluster failed (metadata, watermarks, an admin request).
    #[error("{operation}")]
    Request {
        /// What was asked, with its subject ("metadata of \"qoe.beacons.v1\"").
        operation: String,
        /// The client's error.
        #[source]
        source: Box<KafkaError>,
    },
    /// The cluster refused to create a topic.
    #[error("creating topic {topic:?}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's error code.
        #[source]
        source: RDKafkaErrorCode,
    },
    /// A topic created but not in the metadata after the wait.
    #[error("topic {topic:?}: created, but not in the broker's metadata after {waited_secs} s")]
    TopicNotVisible {
        /// The topic.
        topic: String,
        /// How long it was waited for.
        waited_secs: u64,
    },
}

/// A property the pipeline fixes: `value` (or, when `None`, never set), under `key` and `aliases`.
#[derive(Debug, Clone)]
struct Requirement {
    key: &'static str,
    aliases: &'static [&'static str],
    value: Option<String>,
    owner: Cow<'static, str>,
}

/// The properties of one client: the pipeline's defaults, the user's options, the pipeline's
/// requirements (see the [module documentation](super) for the rule).
#[derive(Debug, Clone)]
pub struct ClientSpec {
    client: &'static str,
    defaults: Vec<(&'static str, String)>,
    overrides: Vec<(String, String)>,
    required: Vec<Requirement>,
}

impl ClientSpec {
    /// Any client on `options.brokers`: `bootstrap.servers` is required (owned by `--brokers`).
    /// `client` names the client in errors ("the stream job's consumer").
    pub fn new(client: &'static str, options: &KafkaOptions) -> Self {
        ClientSpec {
            client,
            defaults: Vec::new(),
            overrides: options.overrides.clone(),
            required: Vec::new(),
        }
        .require(
            "bootstrap.servers",
            &["metadata.broker.list"],
            options.brokers.clone(),
            "--brokers",
        )
    }

    /// A consumer of `group_id`: reads committed records only, never commits on its own
    /// (`enable.auto.commit=false`), starts from the earliest offset by default.
    pub fn consumer(client: &'static str, options: &KafkaOptions, group_id: &str) -> Self {
        Self::new(client, options)
            .require("group.id", &[], group_id, "--group-id")
            .require(
                "enable.auto.commit",
                &[],
                "false",
                "the pipeline (offsets are committed after the outputs wrote)",
            )
            .require(
                "isolation.level",
                &[],
                "read_committed",
                "the pipeline (records of aborted transactions are never read)",
            )
            .default("auto.offset.reset", "earliest")
    }

    /// An idempotent producer with `acks=all`, waiting for every acknowledgement.
    pub fn producer(client: &'static str, options: &KafkaOptions) -> Self {
        Self::new(client, options)
            .require(
                "enable.idempotence",
                &[],
                "true",
                "the pipeline (a retry never duplicates or reorders a record)",
            )
            .require(
                "acks",
                &["request.required.acks"],
                "all",
                "the pipeline (acknowledged means written to every in-sync replica)",
            )
            .require(
                "delivery.report.only.error",
                &[],
                "false",
                "the pipeline (every acknowledgement is awaited)",
            )
            .forbid(
                "transactional.id",
                "the pipeline (its producers are idempotent, not transactional)",
            )
    }

    /// An admin client.
    pub fn admin(client: &'static str, options: &KafkaOptions) -> Self {
        Self::new(client, options)
    }

    /// `key=value` unless the user sets `key`.
    pub fn default(mut self, key: &'static str, value: impl ToString) -> Self {
        self.defaults.push((key, value.to_string()));
        self
    }

    /// `key=value` always; a user option for `key` or one of `aliases` is refused, naming `owner`
    /// (a typed setting such as `kafka.linger_ms`, or the guarantee it keeps).
    pub fn require(
        mut self,
        key: &'static str,
        aliases: &'static [&'static str],
        value: impl ToString,
        owner: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.required.retain(|requirement| requirement.key != key);
        self.required.push(Requirement {
            key,
            aliases,
            value: Some(value.to_string()),
            owner: owner.into(),
        });
        self
    }

    /// `key` never set; a user option for it is refused, naming `owner`.
    pub fn forbid(mut self, key: &'static str, owner: impl Into<Cow<'static, str>>) -> Self {
        self.required.retain(|requirement| requirement.key != key);
        self.required.push(Requirement {
            key,
            aliases: &[],
            value: None,
            owner: owner.into(),
        });
        self
    }

    /// Refuses a user option that names a required (or forbidden) property or an alias of one.
    pub fn check(&self) -> Result<(), KafkaClientError> {
        for (key, value) in &self.overrides {
            let owned = self
                .required
                .iter()
                .find(|requirement| requirement.key == key || requirement.aliases.iter().any(|alias| alias == key));
            if let Some(requirement) = owned {
                return Err(KafkaClientError::Refused {
                    key: key.clone(),
                    value: value.clone(),
                    owner: requirement.owner.to_string(),
                });
            }
        }
        Ok(())
    }

    /// The checked librdkafka configuration: defaults, then the user's options, then the
    /// requirements.
    pub fn config(&self) -> Result<ClientConfig, KafkaClientError> {
        self.check()?;
        let mut config = ClientConfig::new();
        for (key, value) in &self.defaults {
            config.set(*key, value);
        }
        for (key, value) in &self.overrides {
            config.set(key, value);
        }
        for requirement in &self.required {
            if let Some(value) = &requirement.value {
                config.set(requirement.key, value);
            }
        }
        Ok(config)
    }

    /// The value the client will have for `key`, if it has one.
    pub fn get(&self, key: &str) -> Option<String> {
        self.config().ok()?.get(key).map(str::to_string)
    }

    /// Creates the client.
    pub fn create<T: FromClientConfig>(&self) -> Result<T, KafkaClientError> {
        self.config()?.create().map_err(|source| KafkaClientError::Create {
            client: self.client,
            source: Box::new(source),
        })
    }

    /// Creates the client with `context`.
    pub fn create_with_context<C: ClientContext, T: FromClientConfigAndContext<C>>(
        &self,
        context: C,
    ) -> Result<T, KafkaClientError> {
        self.config()?
            .create_with_context(context)
            .map_err(|source| KafkaClientError::Create {
                client: self.client,
                source: Box::new(source),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(overrides: &[(&str, &str)]) -> KafkaOptions {
        KafkaOptions::new("broker:9092").with_overrides(
            overrides
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_lose_to_the_user_and_the_user_to_the_requirements() {
        let spec = ClientSpec::consumer("a consumer", &options(&[("auto.offset.reset", "latest")]), "g")
            .default("client.id", "qoe-test");
        assert_eq!(spec.get("auto.offset.reset").as_deref(), Some("latest"));
        assert_eq!(spec.get("client.id").as_deref(), Some("qoe-test"));
        assert_eq!(spec.get("group.id").as_deref(), Some("g"));
        assert_eq!(spec.get("isolation.level").as_deref(), Some("read_committed"));
        assert_eq!(spec.get("bootstrap.servers").as_deref(), Some("broker:9092"));
    }

    #[test]
    fn a_user_option_for_a_required_key_or_its_alias_is_refused_naming_it() {
        for (key, owner) in [
            ("metadata.broker.list", "--brokers"),
            ("group.id", "--group-id"),
            (
                "enable.auto.commit",
                "the pipeline (offsets are committed after the outputs wrote)",
            ),
        ] {
            let error = ClientSpec::consumer("c", &options(&[(key, "x")]), "g")
                .check()
                .unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("kafka option \"{key}=x\": set by {owner}, remove it from the pass-through options")
            );
        }
        for key in ["request.required.acks", "enable.idempotence", "transactional.id"] {
            assert!(
                ClientSpec::producer("p", &options(&[(key, "1")])).check().is_err(),
                "{key}"
            );
        }
        let typed = ClientSpec::producer("p", &options(&[("linger.ms", "50")])).require(
            "linger.ms",
            &["queue.buffering.max.ms"],
            5,
            "kafka.linger_ms",
        );
        assert!(typed
            .check()
            .unwrap_err()
            .to_string()
            .contains("set by kafka.linger_ms"));
        assert!(ClientSpec::producer("p", &options(&[("client.id", "mine")]))
            .check()
            .is_ok());
    }

    #[test]
    fn an_unknown_property_is_refused_by_librdkafka_naming_the_client() {
        let error = ClientSpec::admin("the admin client", &options(&[("no.such.property", "1")]))
            .create::<rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>>()
            .err()
            .unwrap();
        assert_eq!(error.to_string(), "creating the admin client");
        let source = std::error::Error::source(&error).unwrap().to_string();
        assert!(source.contains("no.such.property"), "{source}");
    }
}
