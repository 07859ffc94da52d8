"""Writes the initial seeds of every fuzz target into fuzz/corpus/<target>/.

Run once before the first fuzzing session (the committed corpus already contains them,
minimised together with what the fuzzer found):
    pip install opentelemetry-proto && python3 fuzz/seeds/make_seeds.py
"""
import gzip, hashlib, json, os, random, zlib
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
repo = os.path.dirname(root)
corpus = os.path.join(root, "corpus")

def put(target, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

jsons = []
for name in ["node_sdk_trace.json", "python_json_http_trace.json"]:
    with open(os.path.join(repo, "crates/core/testdata", name), "rb") as f:
        jsons.append(f.read())

# A gateway-style request: `trace` metadata as a JSON string, user and session on the root.
gateway = {
    "resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "openrouter"}}]},
        "scopeSpans": [{
            "scope": {"name": "openrouter", "version": "1"},
            "spans": [
                {"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7",
                 "name": "openrouter.request", "kind": 2,
                 "startTimeUnixNano": "1705312800000000000", "endTimeUnixNano": "1705312801250000000",
                 "attributes": [
                     {"key": "trace", "value": {"stringValue": json.dumps({"trace_id": "app_trace_001", "trace_name": "Chat", "env": {"a": [1, 2]}})}},
                     {"key": "user", "value": {"stringValue": "u-1"}},
                     {"key": "session_id", "value": {"intValue": "7"}},
                 ]},
                {"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b8",
                 "parentSpanId": "00f067aa0ba902b7", "name": "chat gpt-4o",
                 "startTimeUnixNano": "1705312800100000000", "endTimeUnixNano": "1705312801200000000",
                 "attributes": [
                     {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                     {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}},
                     {"key": "gen_ai.usage.cost", "value": {"doubleValue": 0.25}},
                     {"key": "gen_ai.input.messages", "value": {"stringValue": "[{\"role\":\"user\",\"content\":\"hi\"}]"}},
                     {"key": "input.value", "value": {"arrayValue": {"values": [{"boolValue": True}, {"bytesValue": "AAE="}]}}},
                 ],
                 "events": [{"name": "exception", "timeUnixNano": "1705312800200000000",
                             "attributes": [{"key": "exception.message", "value": {"stringValue": "boom"}}]}],
                 "links": [{"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7"}],
                 "status": {"code": 2, "message": "failed"}},
            ],
        }],
    }]
}
jsons.append(json.dumps(gateway).encode())

protos = []
for j in jsons:
    msg = json_format.Parse(j, trace_service_pb2.ExportTraceServiceRequest(), ignore_unknown_fields=True)
    protos.append(msg.SerializeToString())
# The empty-span amplification shape (issue 10): repeated `0x12 0x00` in one ScopeSpans.
spans = b"\x12\x00" * 200
scope = b"\x12" + bytes([len(spans) & 0x7f | 0x80, len(spans) >> 7]) + spans
protos.append(b"\x0a" + bytes([len(scope) & 0x7f | 0x80, len(scope) >> 7]) + scope)

# receiver_decode: flag byte (bit 0 JSON, bits 1-2 identity/gzip/deflate, bit 3 compress here,
# bit 4 small limit, bit 5 zlib) then the body.
for p in protos:
    put("receiver_decode", b"\x00" + p)
    put("receiver_decode", b"\x0a" + p)            # gzip, compressed by the target
    put("receiver_decode", b"\x02" + gzip.compress(p))
    put("receiver_decode", b"\x24" + zlib.compress(p))
for j in jsons:
    put("receiver_decode", b"\x01" + j)
    put("receiver_decode", b"\x0d" + j)            # JSON, raw deflate by the target
    put("json_decode", j)
put("json_decode", b'{"partialSuccess":{"rejectedSpans":"3","errorMessage":"x"}}')

rng = random.Random(10)
for target in ["json_roundtrip", "proc_metadata", "proc_privacy", "proc_batch", "s3_document", "s3_key"]:
    for n in [0, 8, 64, 256, 1024, 4096]:
        put(target, bytes(rng.randrange(256) for _ in range(n)))

# Second round (grpc_decode, receiver_zstd, the GenAI content and processor targets).
import struct, subprocess
def zstd(data, level):
    # The zstd CLI (scripts/setup-test-deps.sh installs it): the reference encoder.
    return subprocess.run(["zstd", "-q", "-c", f"-{level}"], input=data,
                          stdout=subprocess.PIPE, check=True).stdout
for p in protos:
    # grpc_decode: flag byte (bits 0-1 grpc-encoding identity/gzip/deflate/zstd, bit 2 frame
    # here, bit 3 compress here, bit 4 small limit, bits 5-6 limits, bit 7 flag only).
    for f in (0x04, 0x0d, 0x0e, 0x0f, 0x2f, 0x84, 0x1f):
        put("grpc_decode", bytes([f]) + p)
    put("grpc_decode", b"\x00\x00" + struct.pack(">I", len(p)) + p)   # framed by the client
    z = zstd(p, 3)
    put("grpc_decode", b"\x03\x01" + struct.pack(">I", len(z)) + z)
    # receiver_zstd: flag byte (bit 0 encode here, bit 1 small limit, bit 2 Uncompressed,
    # bit 3 two frames, cut at the next byte, bit 4 skippable frame first).
    for f in (0x01, 0x05, 0x09, 0x19, 0x03, 0x41):
        put("receiver_zstd", bytes([f]) + (b"\x64" if f & 8 else b"") + p)
    put("receiver_zstd", b"\x00" + zstd(p, 19))
    put("receiver_zstd", b"\x00" + zstd(p, 1) + zstd(p, 3))
    put("receiver_zstd", b"\x02" + zstd(p * 20, 3))
for target in ["genai_content", "proc_filter", "proc_sampling", "proc_metadata_flat"]:
    for n in [0, 8, 64, 256, 1024, 4096]:
        put(target, bytes(rng.randrange(256) for _ in range(n)))
