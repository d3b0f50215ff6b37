"""The Rust quickstart and the seed's Flask app on ONE Redis share their
limits: the request sequence of compare_quickstart.py, sent alternately to
the two servers, gets exactly the answers one server alone gets (statuses
and bodies), for each strategy given.

Usage: shared_quickstart.py RUST_BINARY PYTHON_WITH_FLASK_LIMITER [STRATEGY...]
Starts its own redis-server on a free loopback port; stops everything at the end.
"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_quickstart import HERE, SEQUENCE, free_port, get, start  # noqa: E402


def run(targets):
    answers = []
    for n, path in enumerate(SEQUENCE, 1):
        if n == 9:
            time.sleep(1.1)
        port = targets[n % len(targets)]
        status, body, _ = get(port, path)
        answers.append((path, status, body if status in (200, 429) else ""))
    return answers


def main():
    rust_bin, python = sys.argv[1], sys.argv[2]
    strategies = sys.argv[3:] or ["fixed-window", "moving-window", "sliding-window-counter"]
    failed = 0
    with tempfile.TemporaryDirectory() as workdir:
        for strategy in strategies:
            redis_port = free_port()
            redis = subprocess.Popen(
                ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", workdir],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            uri = f"redis://127.0.0.1:{redis_port}"
            procs = [redis]
            try:
                time.sleep(0.3)
                env = {"RATELIMIT_STRATEGY": strategy}
                rust_port, flask_port, alone_port = free_port(), free_port(), free_port()
                procs.append(start([rust_bin], rust_port, dict(env, RATELIMIT_STORAGE_URI=uri)))
                procs.append(start([python, os.path.join(HERE, "flask_quickstart.py")], flask_port,
                                   dict(env, FLASK_RATELIMIT_STORAGE_URI=uri)))
                shared = run([rust_port, flask_port])
                procs.append(start([rust_bin], alone_port, env))
                alone = run([alone_port])
            finally:
                for proc in procs:
                    proc.kill()
                    proc.wait()
            diffs = [(n, a, b) for n, (a, b) in enumerate(zip(shared, alone), 1) if a != b]
            for n, a, b in diffs:
                print(f"{strategy}: request {n}: shared {a} vs one server {b}")
            failed += bool(diffs)
            print(f"{strategy}: {len(SEQUENCE) - len(diffs)} of {len(SEQUENCE)} requests answered as by one server")
    print(f"shared: {len(strategies) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
