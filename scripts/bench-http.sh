#!/usr/bin/env bash
# The axum hello-world bare, behind limiter's layer, and behind
# tower_governor, loaded with wrk in one run, one server at a time, each
# measured in alternation ROUNDS times; prints requests/s, each round's
# ratios and their median.
#
# Usage: scripts/bench-http.sh [allow|deny] [ROUNDS] [SECONDS]
# Needs wrk (apt-get install wrk). Loopback only; every run is bounded.
# PIN=1 runs the server on CPU 0 and wrk on CPU 1 (taskset), so that the
# two do not trade places on the CPUs between runs. MODES picks the
# servers (default "bare limiter governor"; the others, which tell the
# headers' cost from the deciding's, are listed in
# benches/http-server/src/main.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
path=${1:-allow}
rounds=${2:-3}
secs=${3:-10}
connections=${CONNECTIONS:-32}
server_cpu=() client_cpu=()
if [ "${PIN:-0}" = 1 ]; then
  server_cpu=(taskset -c 0) client_cpu=(taskset -c 1)
fi

cargo build --release --quiet --manifest-path benches/http-server/Cargo.toml
bin=benches/http-server/target/release/bench-http-server
extra=""
[ "$path" = deny ] && extra=deny

run() { # mode port -> requests/s
  "${server_cpu[@]}" "$bin" "$1" "$2" $extra &
  local pid=$!
  for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$2/" && break
    sleep 0.1
  done
  "${client_cpu[@]}" wrk -t1 -c"$connections" -d2s "http://127.0.0.1:$2/" >/dev/null # warm-up
  local rps
  rps=$("${client_cpu[@]}" wrk -t1 -c"$connections" -d"${secs}s" "http://127.0.0.1:$2/" | awk '/Requests\/sec/ {print $2}')
  kill "$pid" 2>/dev/null || true # gone already if it failed to start
  wait "$pid" 2>/dev/null || true
  echo "$rps"
}

port=18080
echo "path=$path rounds=$rounds seconds=$secs connections=$connections wrk -t1 pinned=${PIN:-0}"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in $(seq "$rounds"); do
  for mode in ${MODES:-bare limiter governor}; do
    port=$((port + 1))
    rps=$(run "$mode" "$port")
    if [ -z "$rps" ]; then
      echo "bench-http.sh: no result for mode $mode (did the server start? see its message above)" >&2
      exit 1
    fi
    echo "round $round $mode: $rps req/s"
    echo "$round $mode $rps" >>"$results"
  done
done
# The machine's speed drifts from one round to the next (a shared VM):
# the modes of a round ran within seconds of each other, so each
# round's own ratios are compared, and their median is the figure.
python3 - "$results" <<'PY'
import statistics, sys
rounds = {}
for line in open(sys.argv[1]):
    r, mode, rps = line.split()
    rounds.setdefault(r, {})[mode] = float(rps)
modes = list(next(iter(rounds.values())))
mean = {m: statistics.mean(x[m] for x in rounds.values()) for m in modes}
print("mean req/s: " + ", ".join(f"{m} {mean[m]:.0f}" for m in modes))
def ratios(a, b):
    return [x[a] / x[b] for x in rounds.values()]
# Besides bare: the limiter against tower_governor, and like for like
# (both without headers; against a layer writing the same four headers).
pairs = [("limiter", "governor"), ("limiter-noheaders", "governor-noheaders"), ("limiter", "headers-only")]
for a, b in [(m, "bare") for m in modes if m != "bare"] + pairs:
    if a in modes and b in modes:
        r = ratios(a, b)
        print(f"{a} / {b}: median {statistics.median(r):.3f}; rounds " + " ".join(f"{v:.3f}" for v in r))
PY
