"""Sends gateway-like LLM traces with the official OpenTelemetry Python SDK (OTLP/HTTP,
protobuf): per trace a SERVER root span and a CLIENT generation span under it, with the
attributes given in a JSON plan (the Python SDK cannot set map values, so the request's
`trace` field arrives flattened as `trace.<key>` attributes, as it does from real SDKs).

Usage: python send_llm_traces.py <traces-url> <plan.json>
plan.json: {"traces": [{"root": {"name": ..., "attributes": {...}},
                        "generation": {"name": ..., "attributes": {...}}}, ...]}
Attribute values: strings, numbers, booleans, or lists of one of those.
"""
import json
import sys

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

url, plan_path = sys.argv[1], sys.argv[2]
with open(plan_path, encoding="utf-8") as f:
    plan = json.load(f)

provider = TracerProvider(resource=Resource.create({"service.name": "llm-gateway"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
tracer = provider.get_tracer("tracecast-trace-shape-test")

for trace in plan["traces"]:
    root, generation = trace["root"], trace["generation"]
    with tracer.start_as_current_span(root["name"], kind=SpanKind.SERVER) as span:
        span.set_attributes(root["attributes"])
        with tracer.start_as_current_span(generation["name"], kind=SpanKind.CLIENT) as gen:
            gen.set_attributes(generation["attributes"])
            gen.set_status(Status(StatusCode.OK))
        span.set_status(Status(StatusCode.OK))

ok = provider.force_flush(30_000)
provider.shutdown()
sys.exit(0 if ok else 1)
