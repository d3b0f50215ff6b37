"""Replays one request sequence against the Rust quickstart and the seed's
Flask app and checks that they answer the same, request for request: status,
body and rate-limit headers (reset times within a second, since the two
servers start their windows a few milliseconds apart).

Usage: compare_quickstart.py RUST_BINARY [PYTHON_WITH_FLASK_LIMITER]
Both servers are started on free loopback ports and stopped at the end.
Exits non-zero, printing every difference, if they disagree.
"""
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
HEADERS = ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"]
TIMED = {"X-RateLimit-Reset", "Retry-After"}
# /slow twice (1 per day), /medium twice within a second, then past the
# second, /fast up to and past the 50 per hour default, /ping (exempt)
# throughout, and a route that does not exist.
SEQUENCE = (
    ["/slow", "/slow", "/medium", "/medium", "/ping", "/nope"]
    + ["/fast"] * 51
    + ["/ping", "/medium", "/fast"]
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, port, env_extra):
    env = dict(os.environ, PORT=str(port), **env_extra)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    out = proc.stdout.read().decode(errors="replace")
    sys.exit(f"{cmd[0]} did not start on port {port}:\n{out}")


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers


def main():
    rust_bin = sys.argv[1]
    python = sys.argv[2] if len(sys.argv) > 2 else sys.executable
    rust_port, flask_port = free_port(), free_port()
    strategy = {"RATELIMIT_STRATEGY": os.environ.get("RATELIMIT_STRATEGY", "fixed-window")}
    rust = start([rust_bin], rust_port, strategy)
    flask = start([python, os.path.join(HERE, "flask_quickstart.py")], flask_port, strategy)
    problems = []
    try:
        for n, path in enumerate(SEQUENCE, 1):
            if n == 9:
                time.sleep(1.1)  # let the 1/second window of /medium pass
            r_status, r_body, r_headers = get(rust_port, path)
            f_status, f_body, f_headers = get(flask_port, path)
            where = f"request {n} GET {path}"
            if r_status != f_status:
                problems.append(f"{where}: status {r_status} (Rust) vs {f_status} (Flask)")
            if f_status in (200, 429) and r_body != f_body:
                problems.append(f"{where}: body {r_body!r} (Rust) vs {f_body!r} (Flask)")
            for name in HEADERS:
                rv, fv = r_headers.get(name), f_headers.get(name)
                if rv == fv:
                    continue
                if name in TIMED and rv is not None and fv is not None and abs(int(rv) - int(fv)) <= 1:
                    continue
                problems.append(f"{where}: {name} {rv!r} (Rust) vs {fv!r} (Flask)")
            print(f"{where}: {r_status} {r_body[:40]!r} " + " ".join(f"{h}={r_headers.get(h)}" for h in HEADERS))
    finally:
        for proc in (rust, flask):
            proc.kill()
            proc.wait()
    if problems:
        print("\n".join(["DIFFERENCES:"] + problems))
        print(f"comparison: {len(SEQUENCE) - len({p.split(':')[0] for p in problems})} passed, "
              f"{len({p.split(':')[0] for p in problems})} failed")
        sys.exit(1)
    print(f"comparison: {len(SEQUENCE)} passed, 0 failed")


if __name__ == "__main__":
    main()
