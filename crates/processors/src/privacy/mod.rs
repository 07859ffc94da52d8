//! The `privacy` processor (Privacy Mode): removes prompt and completion content and keeps
//! everything else: token usage, costs, timing, model information, custom metadata, ids and
//! the span tree.
//!
//! Where: span attributes, span event attributes, span link attributes, scope attributes and
//! resource attributes. Content-carrying events (deprecated OTel GenAI events such as
//! `gen_ai.user.message` or `gen_ai.choice`) are dropped whole. Which keys: see
//! [`conventions`].
//!
//! Each span (and resource) where something was removed gets
//! `tracecast.privacy.redacted_count` (int): how many values (attributes and events) were
//! removed, never which. Scope-attribute removals count on the resource. A batch with
//! nothing to remove is passed on untouched (no copy, received bytes kept); a batch that
//! is changed is copied first if another pipeline shares it, so Privacy Mode in one
//! pipeline never affects another.

pub mod config;
pub mod conventions;

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::RegexSet;
use tracecast_core::proto::common::v1::any_value::Value;
use tracecast_core::proto::common::v1::KeyValue;
use tracecast_core::proto::trace::v1::Span;
use tracecast_core::{metrics, ComponentId, ExportTraceServiceRequest, Processor, TraceBatch};

use crate::attrs;
pub use config::{PrivacyProcessorConfig, ValidPrivacyProcessorConfig};
use conventions::{CONTENT_EVENTS, CONTENT_KEYS, CONTENT_PATTERNS, KEPT_PATTERNS};

/// Marker attribute: how many values were removed from a span or resource.
pub const REDACTED_COUNT_ATTRIBUTE: &str = "tracecast.privacy.redacted_count";

/// The built-in content and kept patterns, compiled once (constants: a unit test compiles
/// them, so the `expect` cannot fire on any input).
static BUILT_IN: LazyLock<(RegexSet, RegexSet)> = LazyLock::new(|| {
    (
        RegexSet::new(CONTENT_PATTERNS).expect("built-in content patterns compile"),
        RegexSet::new(KEPT_PATTERNS).expect("built-in kept patterns compile"),
    )
});

/// The compiled rules: decides per key and per event name.
#[derive(Debug)]
struct Rules {
    content_keys: HashSet<String>,
    content_patterns: RegexSet,
    kept: RegexSet,
    extra_keys: HashSet<String>,
    extra_patterns: RegexSet,
    content_events: HashSet<String>,
    /// Allow-list mode: keys and patterns kept.
    allow: Option<(HashSet<String>, RegexSet)>,
}

impl Rules {
    fn removes_key(&self, key: &str) -> bool {
        if key == REDACTED_COUNT_ATTRIBUTE {
            return false;
        }
        if self.extra_keys.contains(key) || self.extra_patterns.is_match(key) {
            return true;
        }
        let kept = self.kept.is_match(key);
        if !kept && (self.content_keys.contains(key) || self.content_patterns.is_match(key)) {
            return true;
        }
        match &self.allow {
            Some((keys, patterns)) => !(keys.contains(key) || patterns.is_match(key)),
            None => false,
        }
    }

    fn drops_event(&self, name: &str) -> bool {
        self.content_events.contains(name)
    }

    fn any_removed(&self, list: &[KeyValue]) -> bool {
        list.iter().any(|a| self.removes_key(&a.key))
    }

    /// Removes what the rules remove; returns how many.
    fn filter(&self, list: &mut Vec<KeyValue>) -> u64 {
        let before = list.len();
        list.retain(|a| !self.removes_key(&a.key));
        (before - list.len()) as u64
    }

    fn span_needs_change(&self, span: &Span) -> bool {
        self.any_removed(&span.attributes)
            || span
                .events
                .iter()
                .any(|e| self.drops_event(&e.name) || self.any_removed(&e.attributes))
            || span.links.iter().any(|l| self.any_removed(&l.attributes))
    }
}

/// The `privacy` processor. See the module docs.
#[derive(Debug)]
pub struct PrivacyProcessor {
    id: ComponentId,
    rules: Rules,
}

impl PrivacyProcessor {
    /// Builds the processor from its validated config (patterns already compiled).
    pub fn new(id: ComponentId, cfg: ValidPrivacyProcessorConfig) -> Self {
        let rules = Rules {
            content_keys: CONTENT_KEYS.iter().map(|s| s.to_string()).collect(),
            content_patterns: BUILT_IN.0.clone(),
            kept: BUILT_IN.1.clone(),
            extra_keys: cfg.extra_keys,
            extra_patterns: cfg.extra_patterns,
            content_events: CONTENT_EVENTS
                .iter()
                .map(|s| s.to_string())
                .chain(cfg.extra_events)
                .collect(),
            allow: cfg.allow,
        };
        Self { id, rules }
    }

    /// Whether `key` would be removed (for tests and docs tooling).
    pub fn removes_key(&self, key: &str) -> bool {
        self.rules.removes_key(key)
    }

    fn needs_change(&self, req: &ExportTraceServiceRequest) -> bool {
        let r = &self.rules;
        req.resource_spans.iter().any(|rs| {
            rs.resource
                .as_ref()
                .is_some_and(|res| r.any_removed(&res.attributes))
                || rs.scope_spans.iter().any(|ss| {
                    ss.scope
                        .as_ref()
                        .is_some_and(|s| r.any_removed(&s.attributes))
                        || ss.spans.iter().any(|s| r.span_needs_change(s))
                })
        })
    }

    fn redact(&self, req: &mut ExportTraceServiceRequest) {
        let r = &self.rules;
        for rs in &mut req.resource_spans {
            let mut resource_count = 0;
            for ss in &mut rs.scope_spans {
                if let Some(scope) = ss.scope.as_mut() {
                    resource_count += r.filter(&mut scope.attributes);
                }
                for span in &mut ss.spans {
                    let mut count = r.filter(&mut span.attributes);
                    let before = span.events.len();
                    span.events.retain(|e| !r.drops_event(&e.name));
                    count += (before - span.events.len()) as u64;
                    for event in &mut span.events {
                        count += r.filter(&mut event.attributes);
                    }
                    for link in &mut span.links {
                        count += r.filter(&mut link.attributes);
                    }
                    add_marker(&mut span.attributes, count);
                }
            }
            if let Some(resource) = rs.resource.as_mut() {
                resource_count += r.filter(&mut resource.attributes);
                add_marker(&mut resource.attributes, resource_count);
            }
        }
    }
}

/// Adds `count` to the marker (creating it), so a second `privacy` processor with other
/// rules adds to the first one's count.
fn add_marker(list: &mut Vec<KeyValue>, count: u64) {
    if count == 0 {
        return;
    }
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    let previous = match attrs::get(list, REDACTED_COUNT_ATTRIBUTE).and_then(|v| v.value.as_ref()) {
        Some(Value::IntValue(i)) => *i,
        _ => 0,
    };
    attrs::set(
        list,
        REDACTED_COUNT_ATTRIBUTE,
        attrs::int(previous.saturating_add(count)),
    );
}

impl Processor for PrivacyProcessor {
    fn process(&mut self, mut batch: TraceBatch, out: &mut Vec<TraceBatch>) {
        let n = batch.span_count() as u64;
        let labels = metrics::component(self.id.as_str());
        metrics::PROCESSOR_SPANS_IN.get_or_create(&labels).inc_by(n);
        if self.needs_change(batch.request()) {
            self.redact(batch.request_mut());
        }
        metrics::PROCESSOR_SPANS_OUT
            .get_or_create(&labels)
            .inc_by(n);
        out.push(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processor(cfg: PrivacyProcessorConfig) -> PrivacyProcessor {
        let valid = tracecast_config::ValidateInto::validate_into(&cfg).unwrap();
        PrivacyProcessor::new(ComponentId::parse("privacy").unwrap(), valid)
    }

    #[test]
    fn built_in_patterns_compile() {
        assert_eq!(BUILT_IN.0.len(), CONTENT_PATTERNS.len());
        assert_eq!(BUILT_IN.1.len(), KEPT_PATTERNS.len());
    }

    #[test]
    fn kept_keys_win_over_content_patterns_but_not_over_extras() {
        let p = processor(PrivacyProcessorConfig::default());
        assert!(p.removes_key("gen_ai.prompt.0.content"));
        assert!(!p.removes_key("gen_ai.prompt.0.role"));
        assert!(!p.removes_key("gen_ai.completion.0.finish_reason"));
        assert!(!p.removes_key("gen_ai.usage.input_tokens"));
        assert!(!p.removes_key("llm.token_count.total"));
        assert!(!p.removes_key("retrieval.documents.0.document.id"));
        assert!(p.removes_key("retrieval.documents.0.document.content"));
        let strict = processor(PrivacyProcessorConfig {
            extra_keys: vec!["gen_ai.usage.input_tokens".into()],
            ..Default::default()
        });
        assert!(strict.removes_key("gen_ai.usage.input_tokens"));
    }

    #[test]
    fn allow_list_mode_drops_unlisted_keys_but_never_allows_content() {
        let p = processor(PrivacyProcessorConfig {
            allow_list_mode: true,
            allow_keys: vec!["input.value".into(), "http.route".into()],
            allow_patterns: vec![],
            ..Default::default()
        });
        assert!(p.removes_key("input.value"));
        assert!(!p.removes_key("http.route"));
        assert!(p.removes_key("gen_ai.request.model"));
        assert!(!p.removes_key(REDACTED_COUNT_ATTRIBUTE));
    }
}
