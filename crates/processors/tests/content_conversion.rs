//! The one content conversion (`tracecast_core::genai`) against the convention fixtures
//! Privacy Mode is tested with (`testdata/`): every fixture's generation gives chat
//! messages and a completion holding the fixture's prompt and answer text, and after
//! `privacy` no span of any fixture has input or output left (what the trace file then
//! writes: the shape without `input`/`output`).

mod support;

use tracecast_config::ValidateInto;
use tracecast_core::genai::{request_text, span_content, Input, Output};
use tracecast_core::{ComponentId, Processor, TraceBatch};
use tracecast_processors::privacy::{PrivacyProcessor, PrivacyProcessorConfig};

/// (fixture, text expected in some span's input, text expected in some span's output).
const FIXTURES: &[(&str, &str, &str)] = &[
    ("otel_genai_current.json", "", ""),
    ("otel_genai_deprecated.json", "", ""),
    ("openllmetry.json", "", ""),
    ("openinference.json", "", ""),
    (
        "vercel_ai.json",
        "haiku about autumn leaves",
        "Crimson leaves drifting slowly",
    ),
    ("langfuse.json", "", ""),
    ("gateway_request.json", "Hello!", ""),
];

fn privacy() -> PrivacyProcessor {
    let cfg = PrivacyProcessorConfig::default().validate_into().unwrap();
    PrivacyProcessor::new(ComponentId::parse("privacy/convert").unwrap(), cfg)
}

#[test]
fn every_convention_fixture_converts_and_privacy_leaves_no_content() {
    for (name, input_text, output_text) in FIXTURES {
        let fixture = support::load(name);
        let spans = support::spans(&fixture.request);
        let contents: Vec<_> = spans
            .iter()
            .map(|s| span_content(&s.attributes, &s.events))
            .collect();
        let chat_inputs: Vec<String> = contents
            .iter()
            .filter_map(|c| match &c.input {
                Some(i @ Input::Messages(m)) if !m.is_empty() => Some(i.text()),
                _ => None,
            })
            .collect();
        let completions: Vec<String> = contents
            .iter()
            .filter_map(|c| match &c.output {
                Some(o @ Output::Completion(_)) => Some(o.text()),
                _ => None,
            })
            .collect();
        assert!(
            !chat_inputs.is_empty(),
            "{name}: no chat input in {contents:#?}"
        );
        assert!(
            !completions.is_empty(),
            "{name}: no completion in {contents:#?}"
        );
        // The converted text is the fixture's content (its prompt and answer strings).
        let all_text = format!("{chat_inputs:?} {completions:?}");
        assert!(
            fixture
                .content
                .iter()
                .any(|c| all_text.contains(c.as_str())),
            "{name}: none of {:?} in {all_text}",
            fixture.content
        );
        assert!(
            all_text.contains(input_text),
            "{name}: {input_text:?} in {all_text}"
        );
        assert!(
            all_text.contains(output_text),
            "{name}: {output_text:?} in {all_text}"
        );

        let mut out = Vec::new();
        privacy().process(support::batch(fixture.request.clone()), &mut out);
        let redacted = out.pop().map(TraceBatch::into_request).unwrap();
        for span in support::spans(&redacted) {
            let c = span_content(&span.attributes, &span.events);
            assert!(
                c.input.is_none() && c.output.is_none(),
                "{name}: {} keeps content after privacy: {c:#?}",
                span.name
            );
            let text = request_text(span);
            assert_eq!(
                (text.input, text.output),
                (None, None),
                "{name}: {}",
                span.name
            );
        }
    }
}
