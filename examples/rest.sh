#!/usr/bin/env bash
# A walk through Conveyor's REST API with curl: every endpoint, in the order an agent meets them.
#
#   conveyor serve --http            # prints an admin key once, on its first start
#   CONVEYOR_API_KEY=cvk_... examples/rest.sh
#
# CONVEYOR_URL defaults to http://127.0.0.1:8765. The key must be an admin key for /execute_tool
# and /metrics. Needs curl (7.76+, for --fail-with-body); python3 only picks fields out of JSON.
set -euo pipefail

URL=${CONVEYOR_URL:-http://127.0.0.1:8765}
KEY=${CONVEYOR_API_KEY:?set CONVEYOR_API_KEY to an API key (conveyor keys create --role admin)}
AUTH="Authorization: Bearer $KEY"

step() { printf '\n== %s\n' "$*"; }
# field NAME: one top-level field of the JSON on stdin
field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
get() { curl -sS --fail-with-body -H "$AUTH" "$URL$1"; echo; }
post() { curl -sS --fail-with-body -H "$AUTH" -H 'Content-Type: application/json' -d "$2" "$URL$1"; echo; }

step "GET /healthz (no key needed)"
curl -sS --fail-with-body "$URL/healthz"; echo

step "GET /tools: every tool with its schemas (here, just the names)"
get /tools | python3 -c 'import json, sys; print(*(t["name"] for t in json.load(sys.stdin)["tools"]))'

step "GET /tools?q=sleep: search"
get "/tools?q=sleep"

step "POST /execute_tool: run a tool now (admin)"
post /execute_tool '{"tool": "demo_add", "arguments": {"a": 1, "b": 2}}'

step "POST /jobs/submit: run it as a background job (202 Accepted)"
job=$(post /jobs/submit '{"tool": "demo_sleep", "arguments": {"seconds": 1, "steps": 4}}')
echo "$job"
job_id=$(field job_id <<<"$job")

step "GET /jobs/$job_id: poll"
get "/jobs/$job_id"

step "GET /jobs/$job_id?wait_seconds=10: long-poll until it ends (at most 25 s a call)"
get "/jobs/$job_id?wait_seconds=10"

step "GET /jobs/{job_id}/stream: follow a new job as Server-Sent Events until it ends"
job_id=$(post /jobs/submit '{"tool": "demo_sleep", "arguments": {"seconds": 1, "steps": 4}}' | field job_id)
curl -sS --fail-with-body -N -H "$AUTH" "$URL/jobs/$job_id/stream"

step "DELETE /jobs/{job_id}: cancel a long job (owner only)"
job_id=$(post /jobs/submit '{"tool": "demo_sleep", "arguments": {"seconds": 600}}' | field job_id)
curl -sS --fail-with-body -X DELETE -H "$AUTH" "$URL/jobs/$job_id"; echo

step "GET /jobs?tool=demo_sleep&status=completed&limit=5: list your jobs, newest first"
get "/jobs?tool=demo_sleep&status=completed&limit=5"

step "POST /webhooks: have your jobs' ends POSTed to a URL, signed (the secret is shown once)"
webhook=$(post /webhooks '{"url": "https://example.com/hooks/conveyor", "events": ["job.completed", "job.failed"]}')
echo "$webhook"
webhook_id=$(field webhook_id <<<"$webhook")

step "GET /webhooks: your webhooks (never their secrets)"
get /webhooks

step "DELETE /webhooks/{webhook_id}: unregister"
curl -sS --fail-with-body -X DELETE -H "$AUTH" "$URL/webhooks/$webhook_id"; echo

step "GET /openapi.json: the API's description"
get /openapi.json | python3 -c 'import json, sys; d = json.load(sys.stdin); print(d["info"]["title"], "-", len(d["paths"]), "paths")'

step "GET /metrics: Prometheus text (admin); the job gauges"
metrics=$(get /metrics)
grep '^conveyor_jobs{' <<<"$metrics"
