//! The content keys of every convention Privacy Mode knows, and the keys it always keeps.
//!
//! A key is content if it is one of [`CONTENT_KEYS`] or matches one of
//! [`CONTENT_PATTERNS`], unless it matches [`KEPT_PATTERNS`] (token usage, costs, model
//! information, finish reasons, roles, ids, custom metadata). Patterns match both the bare
//! key and its flattened sub-keys (`llm.input_messages` and `llm.input_messages.0.message.content`).

/// Content keys matched by exact name.
pub const CONTENT_KEYS: &[&str] = &[
    // OTel GenAI, current semantic conventions.
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    // OTel GenAI, deprecated attributes (and the event names, sometimes sent as keys).
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.content.prompt",
    "gen_ai.content.completion",
    // OpenLLMetry (Traceloop).
    "traceloop.entity.input",
    "traceloop.entity.output",
    // OpenInference (Arize Phoenix).
    "input.value",
    "output.value",
    "llm.prompts",
    "reranker.query",
    // Vercel AI SDK.
    "ai.prompt",
    "ai.response.text",
    "ai.response.toolCalls",
    "ai.response.object",
    "ai.response.reasoning",
    "ai.toolCall.args",
    "ai.toolCall.result",
    "ai.value",
    "ai.values",
    // Langfuse.
    "langfuse.trace.input",
    "langfuse.trace.output",
    "langfuse.observation.input",
    "langfuse.observation.output",
    // The gateway's duplicates of the request's input and output.
    "trace.input",
    "trace.output",
    "span.input",
    "span.output",
    // MLflow.
    "mlflow.spanInputs",
    "mlflow.spanOutputs",
];

/// Content keys matched by pattern (regular expressions, anchored).
pub const CONTENT_PATTERNS: &[&str] = &[
    // OTel GenAI current, flattened forms and retrieval text.
    r"^gen_ai\.(input|output)\.messages\.",
    r"^gen_ai\.(system_instructions|tool\.definitions)\.",
    r"^gen_ai\.tool\.call\.(arguments|result)\.",
    r"^gen_ai\.retrieval\.(query|documents?)(\..+)?$",
    r"^gen_ai\.retrieval\..*(text|content)$",
    // OpenLLMetry indexed prompts/completions and function definitions.
    r"^gen_ai\.(prompt|completion)\.\d+\.",
    r"^traceloop\.entity\.(input|output)\.",
    r"^llm\.request\.functions\.",
    // OpenInference messages, prompts, templates, tools, documents, embeddings.
    r"^llm\.(input|output)_messages(\.|$)",
    r"^llm\.prompts\.",
    r"^llm\.prompt_template(\.|$)",
    r"^llm\.tools(\.|$)",
    r"^retrieval\.documents\.\d+\.document\.(content|metadata)$",
    r"^reranker\.(input|output)_documents\.\d+\.document\.(content|metadata)$",
    r"^embedding\.embeddings\.\d+\.embedding\.text$",
    // Vercel AI SDK prompt parts (`ai.prompt.messages`, `ai.prompt.tools`, ...).
    r"^ai\.prompt\.",
    // Flattened forms of Langfuse and gateway input/output.
    r"^(langfuse\.(trace|observation)|trace|span)\.(input|output)\.",
];

/// Span events whose attributes are all content (deprecated OTel GenAI events): the event
/// is dropped whole and counted.
pub const CONTENT_EVENTS: &[&str] = &[
    "gen_ai.system.message",
    "gen_ai.user.message",
    "gen_ai.assistant.message",
    "gen_ai.tool.message",
    "gen_ai.choice",
    "gen_ai.content.prompt",
    "gen_ai.content.completion",
];

/// Keys never treated as built-in content (only `extra_keys` / `extra_patterns` can remove
/// them): what Privacy Mode promises to keep.
pub const KEPT_PATTERNS: &[&str] = &[
    r"^gen_ai\.usage\.",
    r"(^|[._])costs?([._]|$)",
    r"^gen_ai\.(request|response)\.model$",
    r"^gen_ai\.(system|provider\.name|operation\.name)$",
    r"^gen_ai\.request\.",
    r"^gen_ai\.(response\.id|conversation\.id)$",
    r"(^|[._])finish_?reasons?$",
    r"^gen_ai\.(prompt|completion)\.\d+\.role$",
    r"^llm\.token_count\.",
    r"^llm\.(model_name|invocation_parameters|provider|system)$",
    r"^ai\.(usage|model|settings)\.",
    r"^trace\.metadata\.",
    r"^(user|session)\.id$",
    r"^tracecast\.",
    r"(^|[._])id$",
    r"(^|[._])mime_type$",
];

/// Default allow list (allow-list mode): keys kept besides [`DEFAULT_ALLOW_PATTERNS`].
pub const DEFAULT_ALLOW_KEYS: &[&str] = &[
    "service.name",
    "service.namespace",
    "service.version",
    "service.instance.id",
    "deployment.environment",
    "deployment.environment.name",
    "telemetry.sdk.name",
    "telemetry.sdk.language",
    "telemetry.sdk.version",
    "gen_ai.operation.name",
    "gen_ai.system",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.response.id",
    "gen_ai.response.finish_reasons",
    "gen_ai.conversation.id",
    "gen_ai.output.type",
    "llm.model_name",
    "llm.provider",
    "llm.system",
    "llm.invocation_parameters",
    "openinference.span.kind",
    "user.id",
    "session.id",
    // The metadata processor's inputs, so `privacy` and `metadata` commute.
    "trace",
    "user",
    "session_id",
    "error.type",
    "http.response.status_code",
    "server.address",
    "server.port",
];

/// Default allow list (allow-list mode): patterns.
pub const DEFAULT_ALLOW_PATTERNS: &[&str] = &[
    r"^gen_ai\.usage\.",
    r"^gen_ai\.request\.",
    r"^llm\.token_count\.",
    r"^trace\.metadata\.",
    // The request's `trace` field flattened (`trace.trace_name`, `trace.environment`), so
    // `privacy` and `metadata` commute; `trace.input` / `trace.output` are content and go.
    r"^trace\.",
    r"^tracecast\.",
    r"^ai\.usage\.",
    r"(^|[._])costs?([._]|$)",
    r"(^|[._])finish_?reasons?$",
];
