"""A Python `limits` 5.8 peer for the interoperability test: reads one hit
per line ("<identifiers...>") from stdin and prints True or False, using the
strategy, limit and Redis URL given on the command line."""
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
    print(limiter.hit(item, *line.split()), flush=True)
