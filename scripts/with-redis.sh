#!/usr/bin/env bash
# Runs a command with GATEWAY_TEST_REDIS_URL pointing at a Redis that answers:
# the one already given, else 127.0.0.1:6379, else a redis-server started here on a free port
# (stopped afterwards). Without any Redis the variable stays unset and the Redis-backed tests
# FAIL (they never silently skip).
set -euo pipefail
ping() { "$(dirname "$0")/../.venv/bin/python" - "$1" <<'PY'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
except Exception:
    sys.exit(1)
PY
}
started=""
url="${GATEWAY_TEST_REDIS_URL:-}"
if [ -n "$url" ] && ping "$url"; then :
elif ping "redis://127.0.0.1:6379/0"; then url="redis://127.0.0.1:6379/0"
elif command -v redis-server >/dev/null; then
  port=$("$(dirname "$0")/../.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  dir=$(mktemp -d)
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
  for _ in $(seq 50); do ping "redis://127.0.0.1:$port/0" && break; sleep 0.1; done
  url="redis://127.0.0.1:$port/0"; started="$dir"
  echo "started redis-server on port $port for this run"
else
  echo "WARNING: no Redis reachable and no redis-server installed; Redis-backed tests will fail" >&2
  url=""
fi
cleanup() { if [ -n "$started" ]; then kill "$(cat "$started/redis.pid")" 2>/dev/null || true; rm -rf "$started"; fi; }
trap cleanup EXIT
export GATEWAY_TEST_REDIS_URL="$url"
"$@"
