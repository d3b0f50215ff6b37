"""A Python `limits` 5.8 peer for the interoperability tests of every
storage: started with a storage URI, a strategy name and a limit, it reads
one request per line from stdin:

  <identifiers...>         -> True or False (limits' hit)
  stats <identifiers...>   -> "<reset time> <remaining>" (get_window_stats)

A storage error is printed as "error <type>: <message>" rather than ending
the peer, so the test can tell a refusal from a failure."""
import sys

from limits import parse, storage, strategies

STRATEGIES = {
    "fixed-window": strategies.FixedWindowRateLimiter,
    "moving-window": strategies.MovingWindowRateLimiter,
    "sliding-window-counter": strategies.SlidingWindowCounterRateLimiter,
}

url, strategy, limit = sys.argv[1:4]
limiter = STRATEGIES[strategy](storage.storage_from_string(url))
item = parse(limit)
print("ready", flush=True)
for line in sys.stdin:
    words = line.split()
    try:
        if words[:1] == ["stats"]:
            stats = limiter.get_window_stats(item, *words[1:])
            print(repr(stats.reset_time), stats.remaining, flush=True)
        else:
            print(limiter.hit(item, *words), flush=True)
    except Exception as e:  # noqa: BLE001 - reported to the test, which decides
        print(f"error {type(e).__name__}: {e}".replace("\n", " "), flush=True)
