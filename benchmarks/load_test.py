"""Load test of `texlens serve`: many concurrent clients, then latency, throughput, memory.

    python benchmarks/load_test.py [--requests 1000] [--clients 8] [--threads 2]
        [--backend auto|torch|onnx|onnx-int8]

Starts the server on a free loopback port in a subprocess, sends the requests
(printed example images to /v1/predict; every ``--ink-every``-th one strokes to
/v1/predict/ink instead), stops the server, and prints the status counts, a
zero-5xx check, p50/p99 latency, throughput and the server's RSS before and after.
Exits 1 when any request failed.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
# "x + 1" drawn in screen pixels: two crossing diagonals, a plus, a one.
INK = [[[0, 0], [30, 30], [60, 60]], [[60, 0], [30, 30], [0, 60]], [[90, 30], [150, 30]],
       [[120, 0], [120, 60]], [[180, 6], [192, 0], [192, 60]]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(port: int, args: argparse.Namespace) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "texlens.cli", "serve", "--port", str(port),
           "--threads", str(args.threads), "--max-batch", str(args.max_batch),
           "--batch-wait-ms", str(args.batch_wait_ms), "--backend", args.backend]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("the server did not answer /health within 120 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2, help="the server's torch threads")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--batch-wait-ms", type=float, default=10.0)
    ap.add_argument("--ink-every", type=int, default=10, help="0: images only")
    ap.add_argument("--backend", default="auto", help="auto | torch | onnx | onnx-int8")
    args = ap.parse_args()

    images = [(p.name, p.read_bytes())
              for p in sorted((ROOT / "examples/printed/images").glob("*.png"))]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(port, args)
    try:
        rss_before = rss_mb(proc.pid)

        def one(i: int) -> tuple[int, float]:
            t0 = time.perf_counter()
            with httpx.Client(timeout=120) as c:  # one connection per request, as most
                if args.ink_every and i % args.ink_every == 0:  # clients make them
                    r = c.post(f"{base}/v1/predict/ink", json={"strokes": INK})
                else:
                    name, data = images[i % len(images)]
                    r = c.post(f"{base}/v1/predict", files={"file": (name, data, "image/png")})
            return r.status_code, time.perf_counter() - t0

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - t0
        rss_after = rss_mb(proc.pid)
        health = httpx.get(f"{base}/health", timeout=10).json()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()

    status = Counter(s for s, _ in results)
    lat = sorted(t * 1000 for _, t in results)
    server_errors = sum(n for s, n in status.items() if s >= 500)
    print(f"requests: {args.requests} from {args.clients} clients "
          f"({args.ink_every and args.requests // args.ink_every} of them ink), "
          f"server --threads {args.threads} --max-batch {args.max_batch} "
          f"--batch-wait-ms {args.batch_wait_ms:g} --backend {args.backend}, "
          f"{os.cpu_count()} CPUs")
    print(f"status: {dict(sorted(status.items()))}")
    print(f"5xx: {server_errors} ({'OK' if server_errors == 0 else 'FAIL'})")
    print(f"latency ms: p50 {statistics.median(lat):.0f}, "
          f"p99 {lat[min(len(lat) - 1, int(0.99 * len(lat)))]:.0f}, max {lat[-1]:.0f}")
    print(f"throughput: {args.requests / wall:.1f} requests/s ({wall:.1f} s)")
    print(f"batches: {health['batches']}, mean size {health['mean_batch']}")
    print(f"server RSS: {rss_before:.0f} MB before, {rss_after:.0f} MB after")
    sys.exit(0 if status == Counter({200: args.requests}) else 1)


if __name__ == "__main__":
    main()
