#!/usr/bin/env bash
# Issue #4's Redis benchmarks, in one run on one fresh redis-server:
#  1. decisions/s through limiter's RedisStorage (two limits, one EVALSHA per
#     decision) against redis-benchmark sending the very same EVALSHA at the
#     same concurrency, alternated ROUNDS times;
#  2. the quickstart (release) on that Redis against the seed's Flask app
#     under gunicorn on the same Redis, loaded with wrk on /fast.
#
# Usage: scripts/bench-redis.sh [ROUNDS] [SECONDS]
# Env: CONCURRENCY (default 50), PYTHON (a python with Flask-Limiter 4.1.1,
# limits[redis] 5.8.0 and gunicorn; default python3), GUNICORN_WORKERS (2).
# Needs redis-server, redis-benchmark, wrk. Loopback only; every run bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
secs=${2:-10}
concurrency=${CONCURRENCY:-50}
python=${PYTHON:-python3}
workers=${GUNICORN_WORKERS:-2}

cargo build --release --quiet --manifest-path benches/redis-load/Cargo.toml
cargo build --release --quiet -p quickstart
tool=benches/redis-load/target/release/bench-redis-load

dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no >"$dir/redis.log" 2>&1 &
redis_pid=$!
pids=("$redis_pid")
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
url="redis://127.0.0.1:$port"

echo "== decisions/s: limiter's RedisStorage vs redis-benchmark, same EVALSHA, concurrency $concurrency, ${secs}s x $rounds"
lim_total=0
rb_total=0
for round in $(seq "$rounds"); do
  out=$("$tool" "$url" "$concurrency" "$secs")
  lim=$(awk '/^limiter / {print $2}' <<<"$out")
  read -r -a evalsha <<<"$(awk '/^evalsha / {sub(/^evalsha /, ""); print}' <<<"$out")"
  requests=$(python3 -c "print(max(10000, int($lim * $secs)))")
  rb=$(redis-benchmark -p "$port" -c "$concurrency" -n "$requests" --csv EVALSHA "${evalsha[@]}" |
    awk -F'","' 'NR == 2 {print $2}')
  echo "round $round: limiter $lim decisions/s, redis-benchmark $rb requests/s"
  lim_total=$(python3 -c "print($lim_total + $lim)")
  rb_total=$(python3 -c "print($rb_total + $rb)")
done
echo "command: redis-benchmark -p PORT -c $concurrency -n N --csv EVALSHA ${evalsha[*]}"
python3 -c "l, r = $lim_total / $rounds, $rb_total / $rounds; print(f'mean: limiter {l:.0f}/s, redis-benchmark {r:.0f}/s, ratio {l / r:.3f}')"

echo "== the quickstart on Redis vs the seed's Flask app under gunicorn ($workers workers), wrk -c32 /fast, ${secs}s x $rounds"
serve() { # name port -> starts the app, prints nothing
  if [ "$1" = rust ]; then
    PORT=$2 RATELIMIT_STORAGE_URI=$url target/release/quickstart >"$dir/rust.log" 2>&1 &
  else
    FLASK_RATELIMIT_STORAGE_URI=$url "$python" -m gunicorn -w "$workers" -b "127.0.0.1:$2" \
      --chdir scripts flask_quickstart:app >"$dir/flask.log" 2>&1 &
  fi
  pids+=("$!")
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$2/ping" && return; sleep 0.1; done
  echo "$1 did not start" >&2
  exit 1
}
declare -A total
app_port=$((port + 1))
for round in $(seq "$rounds"); do
  for app in rust flask; do
    app_port=$((app_port + 1))
    redis-cli -p "$port" flushall >/dev/null
    serve "$app" "$app_port"
    rps=$(wrk -t1 -c32 -d"${secs}s" "http://127.0.0.1:$app_port/fast" | awk '/Requests\/sec/ {print $2}')
    kill "${pids[-1]}"
    wait "${pids[-1]}" 2>/dev/null || true
    unset 'pids[-1]'
    echo "round $round $app: $rps req/s"
    total[$app]=$(python3 -c "print(${total[$app]:-0} + $rps)")
  done
done
python3 -c "r, f = ${total[rust]} / $rounds, ${total[flask]} / $rounds; print(f'mean: quickstart {r:.0f} req/s, Flask+gunicorn {f:.0f} req/s, ratio {r / f:.1f}')"
