#!/usr/bin/env bash
# The axum hello-world bare, behind limiter's layer, and behind
# tower_governor, loaded with wrk in one run, one server at a time, each
# measured in alternation ROUNDS times; prints requests/s and ratios.
#
# Usage: scripts/bench-http.sh [allow|deny] [ROUNDS] [SECONDS]
# Needs wrk (apt-get install wrk). Loopback only; every run is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
path=${1:-allow}
rounds=${2:-3}
secs=${3:-10}
connections=${CONNECTIONS:-32}

cargo build --release --quiet --manifest-path benches/http-server/Cargo.toml
bin=benches/http-server/target/release/bench-http-server
extra=""
[ "$path" = deny ] && extra=deny

run() { # mode port -> requests/s
  "$bin" "$1" "$2" $extra &
  local pid=$!
  for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$2/" && break
    sleep 0.1
  done
  wrk -t1 -c"$connections" -d2s "http://127.0.0.1:$2/" >/dev/null # warm-up
  local rps
  rps=$(wrk -t1 -c"$connections" -d"${secs}s" "http://127.0.0.1:$2/" | awk '/Requests\/sec/ {print $2}')
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  echo "$rps"
}

declare -A total
port=18080
echo "path=$path rounds=$rounds seconds=$secs connections=$connections wrk -t1"
for round in $(seq "$rounds"); do
  for mode in bare limiter governor; do
    port=$((port + 1))
    rps=$(run "$mode" "$port")
    echo "round $round $mode: $rps req/s"
    total[$mode]=$(python3 -c "print(${total[$mode]:-0} + $rps)")
  done
done
python3 - "${total[bare]}" "${total[limiter]}" "${total[governor]}" "$rounds" <<'PY'
import sys
bare, lim, gov, n = (float(x) for x in sys.argv[1:5])
bare, lim, gov = bare / n, lim / n, gov / n
print(f"mean req/s: bare {bare:.0f}, limiter {lim:.0f}, tower_governor {gov:.0f}")
print(f"limiter / bare = {lim / bare:.3f}; limiter / tower_governor = {lim / gov:.3f}; tower_governor / bare = {gov / bare:.3f}")
PY
