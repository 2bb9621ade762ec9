//! Which features enrich which task: the task-feature mapping.
//!
//! A task lists feature refs, most important first. Each ref's group
//! belongs to an entity type, so the mapping is "task type -> relevant
//! features per entity type" without repeating the entity: a request's
//! `entities` (`{"user": "u1", "product": "p9"}`) picks which of them apply.
//! The order is what the token budget keeps: the least important features
//! go first when the block would not fit.
//!
//! Four tasks are built in (product recommendation, customer support,
//! content generation, code generation). They name groups by convention
//! (`user_profile`, `product_catalog`, ...); a ref whose group is not
//! registered is skipped, so they cost nothing until those groups exist.
//! The serving file replaces a built-in task by naming it, adds tasks, or
//! drops the built-ins with `builtin_tasks: false`.

use super::monitor::MonitorSettings;
use crate::model::FeatureRef;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `enrichment:` in the serving file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichmentConfig {
    /// Start from the built-in tasks. Default true.
    #[serde(default = "yes")]
    pub builtin_tasks: bool,
    /// Task type -> its features; replaces a built-in task of that name.
    #[serde(default)]
    pub tasks: BTreeMap<String, TaskConfig>,
    #[serde(default)]
    pub monitor: MonitorSettings,
}

impl Default for EnrichmentConfig {
    fn default() -> Self {
        EnrichmentConfig { builtin_tasks: true, tasks: BTreeMap::new(), monitor: MonitorSettings::default() }
    }
}

/// One task type's enrichment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// A task that is not enabled passes prompts through untouched.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `group:feature` refs, most important first.
    pub features: Vec<String>,
    /// Values older than this (by event time) are left out. A request may
    /// ask for a different threshold.
    #[serde(default = "default_freshness_threshold")]
    pub freshness_threshold_seconds: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// One hour: values refreshed hourly or more often qualify by default.
pub const DEFAULT_FRESHNESS_THRESHOLD_SECONDS: u64 = 3600;

fn default_freshness_threshold() -> u64 {
    DEFAULT_FRESHNESS_THRESHOLD_SECONDS
}

fn yes() -> bool {
    true
}

impl EnrichmentConfig {
    /// Checks every task's refs and the monitor settings; the message names
    /// the task and ref at fault.
    pub fn validate(&self) -> Result<(), String> {
        for (name, task) in &self.tasks {
            crate::model::registry::validate_name("task type", name)?;
            task.validate().map_err(|e| format!("enrichment task '{name}': {e}"))?;
        }
        self.monitor.validate().map_err(|e| format!("enrichment monitor: {e}"))
    }

    /// The tasks in effect: the built-ins (unless switched off) with the
    /// configured tasks replacing or adding to them.
    pub fn effective_tasks(&self) -> BTreeMap<String, TaskConfig> {
        let mut tasks = if self.builtin_tasks { builtin_tasks() } else { BTreeMap::new() };
        tasks.extend(self.tasks.iter().map(|(name, task)| (name.clone(), task.clone())));
        tasks
    }
}

impl TaskConfig {
    fn validate(&self) -> Result<(), String> {
        if self.features.is_empty() {
            return Err("list at least one feature".into());
        }
        let mut seen = std::collections::HashSet::new();
        for text in &self.features {
            FeatureRef::parse(text).map_err(|e| e.to_string())?;
            if !seen.insert(text) {
                return Err(format!("feature '{text}' is listed twice"));
            }
        }
        Ok(())
    }
}

/// The built-in mapping. Groups by entity type: `user_profile` and
/// `user_activity` (entity `user`), `product_catalog` (`product`),
/// `support_history` (`user`), `code_context` (`repository`).
pub fn builtin_tasks() -> BTreeMap<String, TaskConfig> {
    let task = |description: &str, features: &[&str]| TaskConfig {
        enabled: true,
        features: features.iter().map(|f| f.to_string()).collect(),
        freshness_threshold_seconds: DEFAULT_FRESHNESS_THRESHOLD_SECONDS,
        description: description.to_string(),
    };
    BTreeMap::from([
        (
            "product_recommendation".to_string(),
            task(
                "What the user likes and buys, and what the product is",
                &[
                    "user_profile:preferred_categories",
                    "user_activity:recent_purchases",
                    "user_profile:price_sensitivity",
                    "product_catalog:category",
                    "product_catalog:price",
                    "product_catalog:avg_rating",
                    "user_activity:recently_viewed",
                ],
            ),
        ),
        (
            "customer_support".to_string(),
            task(
                "Who the customer is and what went wrong before",
                &[
                    "user_profile:account_tier",
                    "support_history:open_tickets",
                    "support_history:last_issue_category",
                    "user_activity:days_since_last_order",
                    "support_history:satisfaction_score",
                    "user_profile:tenure_days",
                ],
            ),
        ),
        (
            "content_generation".to_string(),
            task(
                "How the reader likes to read",
                &[
                    "user_profile:preferred_tone",
                    "user_profile:reading_level",
                    "user_activity:recent_topics",
                    "user_profile:language",
                ],
            ),
        ),
        (
            "code_generation".to_string(),
            task(
                "The repository's languages, frameworks and conventions",
                &[
                    "code_context:primary_language",
                    "code_context:frameworks",
                    "code_context:style_guide",
                    "code_context:test_framework",
                    "user_profile:experience_level",
                ],
            ),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_tasks_replace_and_extend_the_builtins() {
        let yaml = "tasks:\n  customer_support:\n    enabled: false\n    features: [support_history:open_tickets]\n  \
                    stock_briefing:\n    features: [technical:rsi_14, risk:beta]\n    freshness_threshold_seconds: 86400\n";
        let config: EnrichmentConfig = serde_yaml_ng::from_str(yaml).unwrap();
        config.validate().unwrap();
        let tasks = config.effective_tasks();
        assert_eq!(tasks.len(), 5);
        assert!(!tasks["customer_support"].enabled);
        assert_eq!(tasks["customer_support"].features, ["support_history:open_tickets"]);
        assert_eq!(tasks["stock_briefing"].freshness_threshold_seconds, 86400);
        assert_eq!(tasks["product_recommendation"], builtin_tasks()["product_recommendation"]);

        let only: EnrichmentConfig = serde_yaml_ng::from_str(&format!("builtin_tasks: false\n{yaml}")).unwrap();
        assert_eq!(only.effective_tasks().keys().collect::<Vec<_>>(), ["customer_support", "stock_briefing"]);
    }

    #[test]
    fn bad_tasks_are_refused_with_the_task_named() {
        let bad = |yaml: &str| serde_yaml_ng::from_str::<EnrichmentConfig>(yaml).unwrap().validate().unwrap_err();
        assert!(bad("tasks:\n  t:\n    features: [nogroup]\n").starts_with("enrichment task 't': "));
        assert!(bad("tasks:\n  t:\n    features: []\n").contains("at least one feature"));
        assert!(bad("tasks:\n  t:\n    features: [a:b, a:b]\n").contains("'a:b' is listed twice"));
        assert!(bad("tasks:\n  bad name:\n    features: [a:b]\n").contains("task type name 'bad name' is invalid"));
        let unknown = serde_yaml_ng::from_str::<EnrichmentConfig>("tasks:\n  t:\n    feature: [a:b]\n").unwrap_err();
        assert!(unknown.to_string().contains("unknown field `feature`"), "{unknown}");
    }

    #[test]
    fn builtin_tasks_are_valid() {
        let config = EnrichmentConfig { tasks: builtin_tasks(), ..EnrichmentConfig::default() };
        config.validate().unwrap();
        assert_eq!(
            builtin_tasks().keys().collect::<Vec<_>>(),
            ["code_generation", "content_generation", "customer_support", "product_recommendation"]
        );
    }
}
