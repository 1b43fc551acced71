//! The rule file: TOML with one `[[rule]]` table per rule (see the crate README for every field and
//! the default file). [`RuleSet::from_toml`] parses and checks it, naming the rule and the field of
//! the first problem.

use std::collections::{BTreeMap, BTreeSet};

use qoe_rollup::Grain;
use serde::{Deserialize, Serialize};

use crate::metric::Metric;
use crate::RuleError;

/// The rule file shipped with the crate: it catches the simulator's `cdn_stall` and
/// `publisher_jitter` incidents, localised, and nothing else in a quiet simulation.
pub const DEFAULT_RULES: &str = include_str!("../rules/default.toml");

/// How bad an alert is (an Alertmanager `severity` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look during working hours.
    Info,
    /// Degraded quality for a part of the audience.
    #[default]
    Warning,
    /// Viewers are failing to watch: page someone.
    Critical,
}

impl Severity {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A comparison of a metric with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Strictly above.
    #[serde(rename = ">")]
    Gt,
    /// At or above.
    #[serde(rename = ">=")]
    Ge,
    /// Strictly below.
    #[serde(rename = "<")]
    Lt,
    /// At or below.
    #[serde(rename = "<=")]
    Le,
}

impl Op {
    /// Whether `value op threshold` holds.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
        }
    }

    /// The operator as written in the rule file.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }
}

/// A minimum volume: a series whose `metric` is below `value` in a window counts as having no data
/// there (so that a handful of sessions cannot make an alert flap).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinVolume {
    /// A numeric rollup field, e.g. `active_sessions` or `first_frames`.
    pub metric: String,
    /// The smallest value that counts.
    pub value: f64,
}

/// A threshold rule: `metric op value` held in every window for `for`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRule {
    /// Unique name; the Alertmanager `alertname`.
    pub name: String,
    /// How bad a firing alert is.
    #[serde(default)]
    pub severity: Severity,
    /// The grain whose documents the rule reads.
    pub grain: Grain,
    /// Dimensions that make a series: the grain's documents are summed per distinct value of these
    /// (ratios and averages recomputed from the sums, percentiles from the merged histograms).
    /// Default: all the grain's dimensions (one series per document key).
    #[serde(default)]
    pub by: Option<Vec<String>>,
    /// Only documents whose dimensions have exactly these values.
    #[serde(default, rename = "where")]
    pub filter: BTreeMap<String, String>,
    /// A numeric rollup field: `stall_ratio`, `joins`, `first_frame_ms.p90`, `rtt_ms.avg`, ...
    pub metric: String,
    /// The comparison.
    pub op: Op,
    /// The threshold.
    pub value: f64,
    /// How long the condition must hold before the alert fires, e.g. `"3m"` (default `"0m"`: the
    /// first window).
    #[serde(default, rename = "for")]
    pub for_: Option<String>,
    /// How long a firing alert stays firing after the condition stopped holding (default `"0m"`).
    #[serde(default)]
    pub keep_firing_for: Option<String>,
    /// Windows where the series is below this volume count as no data.
    #[serde(default)]
    pub min_volume: Option<MinVolume>,
    /// Text for the alert's summary (default: generated from the rule).
    #[serde(default)]
    pub summary: Option<String>,
}

/// How far from its trailing baseline a value must be.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Deviation {
    /// Beyond `median ± k × 1.4826 × MAD` of the trailing values (`deviation = { mad = 4.0 }`).
    Mad(f64),
    /// Beyond `median × factor` (up) or `median / factor` (down) (`deviation = { ratio = 2.0 }`).
    Ratio(f64),
}

/// Which side of the baseline is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Above the baseline.
    #[default]
    Up,
    /// Below the baseline.
    Down,
    /// Either side.
    Both,
}

/// A baseline rule: the metric deviates from the trailing baseline of the same series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineRule {
    /// Unique name; the Alertmanager `alertname`.
    pub name: String,
    /// How bad a firing alert is.
    #[serde(default)]
    pub severity: Severity,
    /// The grain whose documents the rule reads.
    pub grain: Grain,
    /// Dimensions that make a series (as for threshold rules).
    #[serde(default)]
    pub by: Option<Vec<String>>,
    /// Only documents whose dimensions have exactly these values.
    #[serde(default, rename = "where")]
    pub filter: BTreeMap<String, String>,
    /// A numeric rollup field.
    pub metric: String,
    /// How much deviation counts.
    pub deviation: Deviation,
    /// Which side of the baseline is bad (default `up`).
    #[serde(default)]
    pub direction: Direction,
    /// And the value must differ from the median by at least this much (default 0).
    #[serde(default)]
    pub min_delta: f64,
    /// Length of the trailing baseline, e.g. `"30m"` (the windows before the current one).
    pub trailing: String,
    /// The baseline needs this much history (windows with data) before the rule judges, e.g. `"10m"`.
    pub min_history: String,
    /// How long the deviation must hold before the alert fires (default `"0m"`).
    #[serde(default, rename = "for")]
    pub for_: Option<String>,
    /// How long a firing alert stays firing after the deviation ended (default `"0m"`).
    #[serde(default)]
    pub keep_firing_for: Option<String>,
    /// Windows where the series is below this volume count as no data (and stay out of the baseline).
    #[serde(default)]
    pub min_volume: Option<MinVolume>,
    /// Text for the alert's summary (default: generated from the rule).
    #[serde(default)]
    pub summary: Option<String>,
}

/// The joint QoE/QoS incident detector: joins and leaves spiking together (viewers re-entering to
/// fix playback), localised to a publisher, a CDN, an edge node or a network (see the crate docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentRule {
    /// Unique name; the Alertmanager `alertname`.
    pub name: String,
    /// How bad a firing alert is.
    #[serde(default)]
    pub severity: Severity,
    /// Length of the trailing baseline of every joins and leaves series, e.g. `"30m"`.
    pub trailing: String,
    /// History (windows with data) a series needs before it can spike, e.g. `"10m"`.
    pub min_history: String,
    /// A spike is above `median + k × 1.4826 × MAD` of the series' trailing values.
    pub k: f64,
    /// ... and at least `factor × median`.
    pub factor: f64,
    /// ... and at least `median + min_excess` for a whole room or the whole service.
    pub min_excess: f64,
    /// ... and at least `median + min_part_excess` for a part: a CDN of a room, a CDN, an edge node,
    /// an ISP or a region.
    pub min_part_excess: f64,
    /// A part serves (counts when asking "did every part spike?") with at least this many active
    /// sessions in the window.
    pub min_sessions: u64,
    /// Also look for re-entry spikes over all rooms (per CDN, edge node, ISP and region), which find
    /// problems that hit many rooms a little each (default true).
    #[serde(default = "yes")]
    pub fleet: bool,
    /// How long a firing alert stays firing after the spike (default `"0m"`).
    #[serde(default)]
    pub keep_firing_for: Option<String>,
}

fn yes() -> bool {
    true
}

/// One rule of the file, by its `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rule {
    /// `kind = "threshold"`.
    Threshold(ThresholdRule),
    /// `kind = "baseline"`.
    Baseline(BaselineRule),
    /// `kind = "incident"`.
    Incident(IncidentRule),
}

impl Rule {
    /// The rule's name.
    pub fn name(&self) -> &str {
        match self {
            Rule::Threshold(rule) => &rule.name,
            Rule::Baseline(rule) => &rule.name,
            Rule::Incident(rule) => &rule.name,
        }
    }

    /// The rule's kind as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Rule::Threshold(_) => "threshold",
            Rule::Baseline(_) => "baseline",
            Rule::Incident(_) => "incident",
        }
    }

    /// The rule's severity.
    pub fn severity(&self) -> Severity {
        match self {
            Rule::Threshold(rule) => rule.severity,
            Rule::Baseline(rule) => rule.severity,
            Rule::Incident(rule) => rule.severity,
        }
    }
}

/// A checked rule file.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    pub(crate) rules: Vec<Compiled>,
}

/// A rule with its durations and metrics resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Compiled {
    pub(crate) rule: Rule,
    /// Series dimensions (threshold and baseline rules).
    pub(crate) by: Vec<&'static str>,
    pub(crate) metric: Option<Metric>,
    pub(crate) min_volume: Option<(Metric, f64)>,
    pub(crate) for_ms: i64,
    pub(crate) keep_firing_for_ms: i64,
    pub(crate) trailing_ms: i64,
    pub(crate) min_history_ms: i64,
}

impl RuleSet {
    /// Parses and checks a rule file.
    ///
    /// ```
    /// let rules = qoe_alert::RuleSet::from_toml(r#"
    /// [[rule]]
    /// name = "cdn-stall"
    /// kind = "threshold"
    /// grain = "cdn"
    /// by = ["cdn"]
    /// metric = "stal_ratio"
    /// op = ">"
    /// value = 0.03
    /// "#);
    /// assert_eq!(
    ///     rules.unwrap_err().to_string(),
    ///     r#"rule "cdn-stall": metric "stal_ratio": not a numeric rollup field"#
    /// );
    /// ```
    pub fn from_toml(text: &str) -> Result<RuleSet, RuleError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            rule: Vec<toml::Table>,
        }
        let file: File = toml::from_str(text).map_err(|error| RuleError::Toml(error.message().to_string()))?;
        let mut rules = Vec::with_capacity(file.rule.len());
        let mut names = BTreeSet::new();
        for (index, table) in file.rule.into_iter().enumerate() {
            let label = match table.get("name").and_then(toml::Value::as_str) {
                Some(name) => format!("\"{name}\""),
                None => format!("#{}", index + 1),
            };
            let rule: Rule =
                toml::Value::Table(table)
                    .try_into()
                    .map_err(|error: toml::de::Error| RuleError::Rule {
                        rule: label.clone(),
                        problem: error.message().trim_end_matches('\n').to_string(),
                    })?;
            if !names.insert(rule.name().to_string()) {
                return Err(RuleError::Rule {
                    rule: label,
                    problem: "name: used by an earlier rule".to_string(),
                });
            }
            rules.push(compile(rule)?);
        }
        Ok(RuleSet { rules })
    }

    /// The [`DEFAULT_RULES`] file, parsed.
    pub fn default_rules() -> RuleSet {
        RuleSet::from_toml(DEFAULT_RULES).expect("the default rule file is checked by the tests")
    }

    /// The rules, in file order.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|compiled| &compiled.rule)
    }
}

/// Parses a duration: whole `s`, `m` or `h` (`"90s"`, `"3m"`, `"1h"`), in ms.
pub fn parse_duration(text: &str) -> Option<i64> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let scale = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number
        .parse::<i64>()
        .ok()?
        .checked_mul(scale)
        .filter(|ms| *ms <= 7 * 86_400_000)
}

fn compile(rule: Rule) -> Result<Compiled, RuleError> {
    let name = rule.name().to_string();
    let fail = |field: &str, problem: String| RuleError::Rule {
        rule: format!("\"{name}\""),
        problem: format!("{field}: {problem}"),
    };
    if name.is_empty() || name.len() > 100 || name.chars().any(|c| c.is_control()) {
        return Err(fail(
            "name",
            format!("must be 1 to 100 printable characters, got \"{name}\""),
        ));
    }
    let duration = |field: &str, text: Option<&str>| -> Result<i64, RuleError> {
        let Some(text) = text else { return Ok(0) };
        parse_duration(text).ok_or_else(|| {
            fail(
                &format!("{field} \"{text}\""),
                "not a duration like \"90s\", \"3m\" or \"1h\" (at most 7 days)".to_string(),
            )
        })
    };
    let metric = |field: &str, path: &str| {
        Metric::parse(path)
            .ok_or_else(|| fail(&format!("{field} \"{path}\""), "not a numeric rollup field".to_string()))
    };
    let series = |grain: Grain, by: &Option<Vec<String>>, filter: &BTreeMap<String, String>| {
        let names = grain.dim_names();
        let check = |dim: &str| {
            names.iter().copied().find(|name| *name == dim).ok_or_else(|| {
                let field = if by.as_ref().is_some_and(|by| by.iter().any(|b| b == dim)) {
                    "by"
                } else {
                    "where"
                };
                fail(
                    &format!("{field} \"{dim}\""),
                    format!("not a dimension of grain {grain} ({})", names.join(", ")),
                )
            })
        };
        for dim in filter.keys() {
            check(dim)?;
        }
        match by {
            None => Ok(names.to_vec()),
            Some(by) => {
                let mut dims = Vec::with_capacity(by.len());
                for dim in by {
                    let dim = check(dim)?;
                    if dims.contains(&dim) {
                        return Err(fail(&format!("by \"{dim}\""), "listed twice".to_string()));
                    }
                    dims.push(dim);
                }
                // Contract order, so that labels and ids do not depend on how the file lists them.
                dims.sort_by_key(|dim| names.iter().position(|name| name == dim));
                Ok(dims)
            }
        }
    };
    // `floor`: None for any finite number, Some(false) for at least 0, Some(true) for above 0.
    let finite = |field: &str, value: f64, floor: Option<bool>| {
        let ok = value.is_finite()
            && match floor {
                None => true,
                Some(false) => value >= 0.0,
                Some(true) => value > 0.0,
            };
        let what = match floor {
            None => "finite number",
            Some(false) => "finite number at least 0",
            Some(true) => "finite number above 0",
        };
        if ok {
            Ok(())
        } else {
            Err(fail(field, format!("must be a {what}, got {value}")))
        }
    };
    let min_volume = |volume: &Option<MinVolume>| -> Result<Option<(Metric, f64)>, RuleError> {
        volume
            .as_ref()
            .map(|volume| {
                finite("min_volume.value", volume.value, Some(false))?;
                Ok((metric("min_volume.metric", &volume.metric)?, volume.value))
            })
            .transpose()
    };
    let mut compiled = Compiled {
        rule: rule.clone(),
        by: Vec::new(),
        metric: None,
        min_volume: None,
        for_ms: 0,
        keep_firing_for_ms: 0,
        trailing_ms: 0,
        min_history_ms: 0,
    };
    match &rule {
        Rule::Threshold(rule) => {
            compiled.by = series(rule.grain, &rule.by, &rule.filter)?;
            compiled.metric = Some(metric("metric", &rule.metric)?);
            finite("value", rule.value, None)?;
            compiled.min_volume = min_volume(&rule.min_volume)?;
            compiled.for_ms = duration("for", rule.for_.as_deref())?;
            compiled.keep_firing_for_ms = duration("keep_firing_for", rule.keep_firing_for.as_deref())?;
        }
        Rule::Baseline(rule) => {
            compiled.by = series(rule.grain, &rule.by, &rule.filter)?;
            compiled.metric = Some(metric("metric", &rule.metric)?);
            match rule.deviation {
                Deviation::Mad(k) => finite("deviation.mad", k, Some(true))?,
                Deviation::Ratio(factor) if factor.is_finite() && factor > 1.0 => {}
                Deviation::Ratio(factor) => {
                    return Err(fail("deviation.ratio", format!("must be above 1, got {factor}")))
                }
            }
            finite("min_delta", rule.min_delta, Some(false))?;
            compiled.min_volume = min_volume(&rule.min_volume)?;
            compiled.for_ms = duration("for", rule.for_.as_deref())?;
            compiled.keep_firing_for_ms = duration("keep_firing_for", rule.keep_firing_for.as_deref())?;
            compiled.trailing_ms = duration("trailing", Some(&rule.trailing))?;
            compiled.min_history_ms = duration("min_history", Some(&rule.min_history))?;
        }
        Rule::Incident(rule) => {
            finite("k", rule.k, Some(true))?;
            finite("factor", rule.factor, Some(true))?;
            finite("min_excess", rule.min_excess, Some(false))?;
            finite("min_part_excess", rule.min_part_excess, Some(false))?;
            compiled.keep_firing_for_ms = duration("keep_firing_for", rule.keep_firing_for.as_deref())?;
            compiled.trailing_ms = duration("trailing", Some(&rule.trailing))?;
            compiled.min_history_ms = duration("min_history", Some(&rule.min_history))?;
        }
    }
    if matches!(compiled.rule, Rule::Baseline(_) | Rule::Incident(_)) {
        if compiled.trailing_ms == 0 {
            return Err(fail("trailing", "must be longer than 0".to_string()));
        }
        if compiled.min_history_ms > compiled.trailing_ms {
            return Err(fail("min_history", "must not be longer than trailing".to_string()));
        }
    }
    Ok(compiled)
}
