//! The request-level fields a filter rule reads, taken from the spans of one request (one
//! trace id in one received batch, as the `metadata` processor defines a request).
//!
//! | field | read from |
//! |---|---|
//! | `model` | generations' `gen_ai.request.model` and `gen_ai.response.model` (both count) |
//! | `provider` | generations' `gen_ai.provider.name`, `gen_ai.system` |
//! | `finish_reason` | generations' `gen_ai.response.finish_reasons` (each element), else the finish reasons inside their output messages |
//! | `prompt_tokens` | sum over generations of `gen_ai.usage.input_tokens` (or `prompt_tokens`) |
//! | `completion_tokens` | sum of `gen_ai.usage.output_tokens` (or `completion_tokens`) |
//! | `total_tokens` | sum of `gen_ai.usage.total_tokens`, else of prompt + completion |
//! | `total_cost` | sum of `gen_ai.usage.total_cost` / `gen_ai.usage.cost`, else input + output cost |
//! | `user_id` | any span's or resource's `user.id` (or the gateway's raw `user`) |
//! | `session_id` | `session.id` (or the raw `session_id`) |
//! | `api_key_name` | the ingest key the request authenticated with, else `api_key_name_attribute` |
//! | `input` / `output` | each span's prompt / completion text, every convention ([`request_text`]) |
//! | `attribute: k` | attribute `k` on any span, else on the spans' resources |
//!
//! A generation is a span with `gen_ai.operation.name`, `gen_ai.request.model` or
//! `gen_ai.response.model` (the `metadata` processor's default). A numeric field is absent
//! when no generation carries it.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashSet;

use tracecast_core::genai::{request_text, span_content, RequestText};
use tracecast_core::proto::common::v1::KeyValue;
use tracecast_core::proto::trace::v1::Span;

use super::rules::{push_items, Field, FilterRules, Item};
use crate::attrs;
use crate::metadata::{SESSION_ID_ATTRIBUTE, USER_ID_ATTRIBUTE};

const MODEL: &[&str] = &["gen_ai.request.model", "gen_ai.response.model"];
const PROVIDER: &[&str] = &["gen_ai.provider.name", "gen_ai.system"];
const FINISH_REASON: &[&str] = &["gen_ai.response.finish_reasons"];
const PROMPT_TOKENS: &[&str] = &["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"];
const COMPLETION_TOKENS: &[&str] = &[
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
];
const TOTAL_TOKENS: &[&str] = &["gen_ai.usage.total_tokens"];
const TOTAL_COST: &[&str] = &["gen_ai.usage.total_cost", "gen_ai.usage.cost"];
const INPUT_COST: &[&str] = &["gen_ai.usage.input_cost"];
const OUTPUT_COST: &[&str] = &["gen_ai.usage.output_cost"];

/// One span of a request with its resource's attributes.
pub struct SpanRef<'a> {
    pub span: &'a Span,
    pub resource: &'a [KeyValue],
}

/// The spans of one request and the batch's ingest key name.
pub struct Request<'a> {
    pub spans: Vec<SpanRef<'a>>,
    pub api_key_name: Option<&'a str>,
    /// Indexes of the generation spans in `spans`.
    generations: Vec<usize>,
    /// Each span's content text, read once (only when a rule reads `input`/`output`).
    texts: OnceCell<Vec<RequestText>>,
}

impl<'a> Request<'a> {
    /// `markers`: the attributes that make a span a generation.
    pub fn new(spans: Vec<SpanRef<'a>>, api_key_name: Option<&'a str>, markers: &[String]) -> Self {
        let generations = spans
            .iter()
            .enumerate()
            .filter(|(_, s)| markers.iter().any(|m| attrs::has(&s.span.attributes, m)))
            .map(|(i, _)| i)
            .collect();
        Self {
            spans,
            api_key_name,
            generations,
            texts: OnceCell::new(),
        }
    }

    fn generation_spans(&self) -> impl Iterator<Item = &'a Span> + '_ {
        self.generations.iter().map(|&i| self.spans[i].span)
    }

    /// The values of `keys` on the generations (every key, every generation).
    fn read_generations(&self, keys: &[&str], out: &mut Vec<Item<'a>>) {
        for span in self.generation_spans() {
            for key in keys {
                if let Some(v) = attrs::get(&span.attributes, key) {
                    push_items(v, out);
                }
            }
        }
    }

    /// The values of `keys` on every span, else (none found) on their resources.
    fn read_spans(&self, keys: &[&str], out: &mut Vec<Item<'a>>) {
        for s in &self.spans {
            for key in keys {
                if let Some(v) = attrs::get(&s.span.attributes, key) {
                    push_items(v, out);
                }
            }
        }
        if !out.is_empty() {
            return;
        }
        // Each resource once, however many of its spans the request has.
        let mut seen = HashSet::new();
        for s in &self.spans {
            if !seen.insert(s.resource.as_ptr() as usize) {
                continue;
            }
            for key in keys {
                if let Some(v) = attrs::get(s.resource, key) {
                    push_items(v, out);
                }
            }
        }
    }

    /// The sum over generations of the first of `keys` each carries (`None`: none does).
    fn sum(&self, keys: &[&str]) -> Option<f64> {
        let mut total = None;
        for span in self.generation_spans() {
            if let Some(v) = first_number(&span.attributes, keys) {
                *total.get_or_insert(0.0) += v;
            }
        }
        total
    }

    /// A per-generation value with a fallback per generation, summed.
    fn sum_or(&self, keys: &[&str], parts: [&[&str]; 2]) -> Option<f64> {
        let mut total = None;
        for span in self.generation_spans() {
            let own = first_number(&span.attributes, keys).or_else(|| {
                let a = first_number(&span.attributes, parts[0]);
                let b = first_number(&span.attributes, parts[1]);
                match (a, b) {
                    (None, None) => None,
                    (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
                }
            });
            if let Some(v) = own {
                *total.get_or_insert(0.0) += v;
            }
        }
        total
    }

    /// The values the request has for `field` (empty: the field is absent).
    pub fn values(&self, field: &Field, rules: &FilterRules) -> Vec<Item<'a>> {
        let mut out = Vec::new();
        let number = |n: Option<f64>| n.map(Item::Number).into_iter().collect();
        match field {
            Field::Model => self.read_generations(MODEL, &mut out),
            Field::Provider => self.read_generations(PROVIDER, &mut out),
            Field::FinishReason => {
                for span in self.generation_spans() {
                    match attrs::get(&span.attributes, FINISH_REASON[0]) {
                        Some(v) => push_items(v, &mut out),
                        // Conventions that put it inside the output messages (OpenLLMetry
                        // `gen_ai.completion.N.finish_reason`, OTel output messages).
                        None => out.extend(
                            span_content(&span.attributes, &span.events)
                                .finish_reasons
                                .into_iter()
                                .map(|r| Item::Text(Cow::Owned(r))),
                        ),
                    }
                }
            }
            Field::UserId => self.read_spans(&[USER_ID_ATTRIBUTE, "user"], &mut out),
            Field::SessionId => self.read_spans(&[SESSION_ID_ATTRIBUTE, "session_id"], &mut out),
            Field::ApiKeyName => match (self.api_key_name, &rules.api_key_name_attribute) {
                (Some(name), _) => out.push(Item::Text(Cow::Borrowed(name))),
                (None, Some(attr)) => self.read_spans(&[attr.as_str()], &mut out),
                (None, None) => {}
            },
            Field::Attribute(key) => self.read_spans(&[key.as_str()], &mut out),
            Field::Input | Field::Output => {
                let texts = self
                    .texts
                    .get_or_init(|| self.spans.iter().map(|s| request_text(s.span)).collect());
                for t in texts {
                    let text = if *field == Field::Input {
                        &t.input
                    } else {
                        &t.output
                    };
                    if let Some(text) = text {
                        out.push(Item::Text(Cow::Owned(text.clone())));
                    }
                }
            }
            Field::PromptTokens => return number(self.sum(PROMPT_TOKENS)),
            Field::CompletionTokens => return number(self.sum(COMPLETION_TOKENS)),
            Field::TotalTokens => {
                return number(self.sum_or(TOTAL_TOKENS, [PROMPT_TOKENS, COMPLETION_TOKENS]))
            }
            Field::TotalCost => return number(self.sum_or(TOTAL_COST, [INPUT_COST, OUTPUT_COST])),
        }
        // Empty strings are no value (a gateway sends `user: ""` for "no user").
        out.retain(|i| !matches!(i, Item::Text(s) if s.is_empty()));
        out
    }
}

/// The first of `keys` holding a finite number (numeric strings included).
fn first_number(list: &[KeyValue], keys: &[&str]) -> Option<f64> {
    keys.iter().find_map(|k| {
        let mut items = Vec::new();
        push_items(attrs::get(list, k)?, &mut items);
        match items.as_slice() {
            [Item::Number(n)] if n.is_finite() => Some(*n),
            [Item::Text(s)] => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
            _ => None,
        }
    })
}
