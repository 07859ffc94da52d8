"""Captures what the official Python OTLP/HTTP JSON exporter sends, as a test fixture.

Usage (see ../README.md): python capture.py OUTPUT.json

This exporter writes non-finite doubles as "NaN"/"Infinity"/"-Infinity" strings and an
empty list attribute as {"arrayValue": {}}: the spans below carry both on purpose.
"""

import http.server
import sys
import threading

from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, set_span_in_context

bodies = []


class Capture(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        bodies.append((self.headers.get("content-encoding"), self.rfile.read(length)))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def main(out):
    server = http.server.HTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_port}/v1/traces"

    provider = TracerProvider(
        resource=Resource.create({"service.name": "python-fixture", "deployment.environment": "test"})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    tracer = provider.get_tracer("fixture-scope", "4.5.6")

    with tracer.start_as_current_span(
        "gateway.request",
        kind=SpanKind.SERVER,
        attributes={
            "http.method": "POST",
            "http.status_code": 200,
            "gen_ai.usage.cost": 0.0125,
            "cache.hit": True,
            "gen_ai.models": ["gpt-4o", "claude-3"],
            "retry.delays": [1, 2, 3],
            "score.nan": float("nan"),
            "score.inf": float("inf"),
            "score.neg_inf": float("-inf"),
            "tags.empty": [],
        },
    ) as root:
        # The SDK's span attribute API takes only primitives and lists; the exporter's encoder
        # also handles maps and bytes, so set those on the span's attribute dict directly to
        # capture its kvlistValue/bytesValue output (including an empty map).
        root._attributes._dict["gen_ai.request"] = {"model": "gpt-4o", "temperature": 0.5, "stop": []}
        root._attributes._dict["meta.empty"] = {}
        root._attributes._dict["payload.digest"] = b"\xde\xad\xbe\xef"
        root.add_event("prompt", {"gen_ai.prompt": 'Say "hello"\nin JSON'})
        root.add_event("completion", {"gen_ai.completion": "héllo ✓", "tokens": 7})
        child = tracer.start_span(
            "llm.call",
            kind=SpanKind.CLIENT,
            context=set_span_in_context(root),
            links=[Link(root.get_span_context(), {"link.reason": "retry-of"})],
        )
        child.set_status(Status(StatusCode.ERROR, "upstream timeout"))
        child.end()
        root.set_status(Status(StatusCode.OK))

    provider.shutdown()
    server.shutdown()
    if len(bodies) != 1:
        sys.exit(f"expected 1 export request, got {len(bodies)}")
    encoding, body = bodies[0]
    if encoding not in (None, "identity"):
        sys.exit(f"expected an uncompressed body, got content-encoding {encoding}")
    with open(out, "wb") as f:
        f.write(body)
    print(f"wrote {len(body)} bytes to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python capture.py OUTPUT.json")
    main(sys.argv[1])
