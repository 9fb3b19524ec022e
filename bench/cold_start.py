#!/usr/bin/env python3
"""Cold start for `make bench`: for each function, RUNS times, the time from starting
`sluice serve NAME` to the first 200 from its /health/ready (Redis and PostgreSQL reachable,
migrations current), polled every millisecond; the median, minimum and maximum. The
environment (SLUICE_* URLs and keys) is the caller's. With --podman IMAGE each run is instead a
container of the image (`podman run` with host networking, a read-only root file system, /tmp a
tmpfs, no capabilities; the caller's SLUICE_* variables but the functions directory, which the
image carries), timed from `podman run` to the same first 200.

  cold_start.py --binary .build/release/sluice --port 19700 --runs 10 --out cold_start.json ingest validate ...
  cold_start.py --podman localhost/sluice:latest --port 19700 --runs 10 --out container_start.json validate
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time


def ready(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET /health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary")
    ap.add_argument("--podman", metavar="IMAGE")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--out", required=True)
    ap.add_argument("functions", nargs="+")
    args = ap.parse_args()
    if not args.binary and not args.podman:
        ap.error("--binary or --podman is required")
    env = dict(os.environ, SLUICE_LOG_LEVEL="warning")
    passed = sorted(k for k in env if k.startswith("SLUICE_") and k != "SLUICE_FUNCTIONS_DIR")
    results = {}
    for name in args.functions:
        times = []
        for run in range(args.runs):
            serve = ["serve", name, "--port", str(args.port), "--host", "127.0.0.1"]
            container = f"sluice-cold-start-{os.getpid()}-{run}"
            start = time.perf_counter()
            if args.podman:
                command = ["podman", "run", "--rm", "--name", container, "--network", "host", "--read-only", "--tmpfs", "/tmp",
                           "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true"]
                command += [a for k in passed for a in ("--env", k)] + [args.podman] + serve
            else:
                command = [args.binary] + serve
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while not ready(args.port):
                if process.poll() is not None:
                    print(f"{name} exited with {process.returncode} before it was ready", file=sys.stderr)
                    return 1
                if time.perf_counter() - start > 30:
                    print(f"{name} was not ready within 30 s", file=sys.stderr)
                    process.kill()
                    return 1
                time.sleep(0.001)
            times.append((time.perf_counter() - start) * 1000)
            if args.podman:
                subprocess.run(["podman", "stop", "--time", "30", container], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            process.terminate()
            process.wait()
        results[name] = {"median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
                         "max_ms": round(max(times), 1), "runs": args.runs}
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps({k: v["median_ms"] for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
