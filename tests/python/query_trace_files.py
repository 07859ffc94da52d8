"""Reads a folder of trace files with DuckDB, as a user would with Athena, and prints the
answers as JSON: per-user requests, tokens and cost (from the trace-level `usage`), requests
per model (from `observations[1]`, SQL's first element: the generation), and each trace's first
user message (from `input.messages`).

Usage: python query_trace_files.py <folder>   (the path_template's fixed folder, e.g.
<bucket>/openrouter-traces: the files are <folder>/<date>/*.json, as an Athena table over
the date partitions reads them)
"""
import json
import sys

import duckdb

folder = sys.argv[1].rstrip("/")
files = f"{folder}/*/*.json"
con = duckdb.connect()
# The plain glob a user writes: the exporter's connection-test probe
# (<folder>/.tracecast/connection-test) has no `.json` extension, so it never matches.
src = f"(SELECT * FROM read_json('{files}', format='auto', union_by_name=true))"

per_user = con.execute(
    f"""SELECT userId, count(*) AS requests, sum(usage.promptTokens) AS prompt_tokens,
               sum(usage.completionTokens) AS completion_tokens,
               sum(usage.totalTokens) AS total_tokens, round(sum(usage.totalCost), 9) AS cost
        FROM {src} GROUP BY userId ORDER BY userId"""
).fetchall()
per_model = con.execute(
    f"""SELECT observations[1].model AS model, count(*) AS requests
        FROM {src} WHERE observations[1].type = 'GENERATION'
        GROUP BY model ORDER BY model"""
).fetchall()
first_user = con.execute(
    f"""SELECT id, list_filter(input.messages, lambda m: m.role = 'user')[1].content AS first
        FROM {src} ORDER BY id"""
).fetchall()

print(
    json.dumps(
        {
            "per_user": [
                {
                    "user": u,
                    "requests": r,
                    "prompt_tokens": p,
                    "completion_tokens": c,
                    "total_tokens": t,
                    "cost": cost,
                }
                for (u, r, p, c, t, cost) in per_user
            ],
            "per_model": [{"model": m, "requests": r} for (m, r) in per_model],
            "first_user_message": {i: first for (i, first) in first_user},
        }
    )
)
