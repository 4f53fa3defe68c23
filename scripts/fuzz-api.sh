#!/bin/sh
# Fuzz every /v1 operation from the OpenAPI document with schemathesis (docs/adr/0004).
# Starts its own sandbox (temp dir, own ports, SQLite), uses the printed all-scopes sandbox key,
# stops only the process it started. Usage: scripts/fuzz-api.sh [max-examples] [seed]
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/.venv/bin"
N=${1:-100}
SEED=${2:-1}
PORT=${FUZZ_PORT:-18580}
SANDBOX_PORT=$((PORT + 1))
WORK=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill -TERM -"$PID" 2>/dev/null; sleep 1; rm -rf "$WORK"' EXIT INT TERM

cat > "$WORK/gateway.toml" <<TOML
environment = "sandbox"
[server]
host = "127.0.0.1"
port = $PORT
[store]
backend = "sqlite"
sqlite_path = "$WORK/var/gateway.db"
[sandbox]
port = $SANDBOX_PORT
seed = 20260101
[jobs]
workers = 2
[capabilities]
dossiers = "national_portal"
identity = "population_db"
[adapters.national_portal]
base_url = "http://127.0.0.1:$SANDBOX_PORT/national_portal"
username = "dvc-gateway"
madonvi = "000.00.00.H47"
[adapters.population_db]
base_url = "http://127.0.0.1:$SANDBOX_PORT/population_db"
consumer_key = "dvc-gateway"
integration_code = "000000"
unit_code = "000.00.00.H47"
TOML

cd "$WORK"
setsid "$BIN/gateway" serve --sandbox --config "$WORK/gateway.toml" > "$WORK/serve.log" 2>&1 &
PID=$!
KEY=""
for _ in $(seq 60); do
  KEY=$(grep -A1 "Sandbox API key" "$WORK/serve.log" 2>/dev/null | tail -n 1 | tr -d ' ')
  [ -n "$KEY" ] && break
  sleep 1
done
[ -n "$KEY" ] || { echo "the sandbox did not start:"; tail -n 30 "$WORK/serve.log"; exit 1; }

"$BIN/st" run "http://127.0.0.1:$PORT/schema/openapi.json" \
  -H "Authorization: Bearer $KEY" \
  --include-path-regex '^/v1/' \
  --exclude-checks positive_data_acceptance \
  --max-examples "$N" --seed "$SEED" --workers 1 \
  --report-dir "$WORK/report"
