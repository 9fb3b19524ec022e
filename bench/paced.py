#!/usr/bin/env python3
"""Paced load for `make bench` and `make soak`: RATE events/s for SECONDS, as uploads of BATCH
events to ingest sent on a fixed schedule (from a few threads, so that a slow answer does not
hold the schedule back), from a pool of gen_events.py events whose ids get a suffix per pass
(so that a long run never repeats an id). Meanwhile it samples the resident memory of the given
processes every 5 s. Then it waits for every job to end and reads from the warehouse the
percentiles of loaded_at - received_at over the run's events.

  paced.py --url http://127.0.0.1:18080 --pool events.ndjson --rate 5000 --seconds 60 \
           --database-url postgres://... --pid ingest=1234 --pid load=1240 --out latency.json
"""
import argparse
import concurrent.futures
import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.parse


def templates(pool_path):
    """Each pool line as (before, id, after) around its event id, or (line, None, b"")."""
    out = []
    with open(pool_path, "rb") as pool:
        for line in pool:
            line = line.rstrip(b"\n")
            marker = b'"event_id":"'
            at = line.find(marker)
            if at < 0:
                out.append((line, None, b""))
                continue
            start = at + len(marker)
            end = line.find(b'"', start)
            out.append((line[:start], line[start:end], line[end:]))
    return out


def psql(database_url, query):
    """One query's rows as text; the query goes on stdin (thousands of job ids exceed an argument's limit)."""
    return subprocess.run(["psql", database_url, "-tA", "-v", "ON_ERROR_STOP=1", "-f", "-"], input=query,
                          capture_output=True, text=True, check=True).stdout


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return -1
    return -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--assertion-command", help="prints X-Sluice-Assertions for POST /api/v1/ingest, one a line (run again when used up or 30 s old)")
    ap.add_argument("--pool", required=True)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--pid", action="append", default=[], help="NAME=PID, sampled every 5 s")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    lines = templates(args.pool)
    uploads = args.rate * args.seconds // args.batch
    interval = args.batch / args.rate
    target = urllib.parse.urlparse(args.url)
    local = threading.local()
    lock = threading.Lock()
    jobs, refused, late = [], [], [0]
    minted = [0.0, None]

    def assertion():
        # An assertion is valid for a minute and accepted once: the command prints a batch (one a
        # line), each request takes one, and a new batch comes when it runs out or is 30 s old.
        if not args.assertion_command:
            return None
        with lock:
            if not minted[1] or time.monotonic() - minted[0] > 30:
                minted[1] = subprocess.run(args.assertion_command, shell=True, check=True, capture_output=True, text=True).stdout.split()
                minted[0] = time.monotonic()
            return minted[1].pop()

    def body(k):
        parts = []
        for j in range(args.batch):
            n = k * args.batch + j
            before, event_id, after = lines[n % len(lines)]
            cycle = n // len(lines)
            if event_id is None:
                parts.append(before)
            else:
                parts.append(before + event_id + (b"-p%d" % cycle if cycle else b"") + after)
        return b"\n".join(parts) + b"\n"

    def send(k, due):
        lag = time.monotonic() - due
        if lag > interval:
            with lock:
                late[0] += 1
        payload = body(k)
        for attempt in range(2):
            try:
                if not hasattr(local, "conn"):
                    local.conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {"Content-Type": "application/x-ndjson"}
                token = assertion()
                if token:
                    headers["X-Sluice-Assertion"] = token
                local.conn.request("POST", "/api/v1/ingest", payload, headers)
                answer = local.conn.getresponse()
                text = answer.read()
                with lock:
                    if answer.status == 202:
                        jobs.append(json.loads(text)["job_id"])
                    else:
                        refused.append(answer.status)
                return
            except (OSError, http.client.HTTPException):
                local.__dict__.pop("conn", None)
        with lock:
            refused.append(0)

    samples = {name: [] for name, _ in (p.split("=") for p in args.pid)}
    pids = dict(p.split("=") for p in args.pid)
    stop = threading.Event()

    def sample():
        start = time.monotonic()
        while not stop.is_set():
            t = round(time.monotonic() - start, 1)
            for name, pid in pids.items():
                samples[name].append((t, rss_kb(pid)))
            stop.wait(5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(args.threads) as pool:
        futures = []
        for k in range(uploads):
            due = start + k * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(send, k, due))
        for f in futures:
            f.result()
    sent_for = time.monotonic() - start

    # Every job ends (the last ones within seconds: the pipeline keeps up or it does not).
    deadline = time.monotonic() + 600
    ids = "{" + ",".join(jobs) + "}"
    while True:
        out = psql(args.database_url,
                   f"SELECT count(*) FILTER (WHERE status IN ('received','processing')) FROM jobs WHERE id = ANY('{ids}'::uuid[])").strip()
        if out == "0" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    stop.set()
    sampler.join()
    drained_after = time.monotonic() - start - sent_for
    query = f"""
        SELECT count(*),
               round(percentile_cont(0.50) WITHIN GROUP (ORDER BY ms)::numeric, 1),
               round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::numeric, 1),
               round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
               round(max(ms)::numeric, 1)
        FROM (SELECT extract(epoch FROM loaded_at - received_at) * 1000 AS ms FROM events WHERE job_id = ANY('{ids}'::uuid[])) t"""
    row = psql(args.database_url, query).strip().split("|")
    statuses = psql(args.database_url, f"SELECT status, count(*) FROM jobs WHERE id = ANY('{ids}'::uuid[]) GROUP BY status").replace("|", " ").split()
    memory = {}
    for name, series in samples.items():
        values = [kb for _, kb in series if kb > 0]
        if not values:
            continue
        # Flatness: after the first minute (or the first fifth, in a short run), how far the
        # resident size strays from its value then.
        warm = min(len(values) - 1, max(1, min(12, len(values) // 5)))
        base = values[warm]
        later = values[warm:]
        memory[name] = {
            "rss_mb_start": round(values[0] / 1024, 1), "rss_mb_after_warm_up": round(base / 1024, 1),
            "rss_mb_end": round(values[-1] / 1024, 1), "rss_mb_max": round(max(values) / 1024, 1),
            "max_drift_after_warm_up_pct": round(max(abs(v - base) for v in later) / base * 100, 1),
            "samples_kb": series,
        }
    result = {
        "rate_events_per_s": args.rate, "seconds": args.seconds, "batch": args.batch,
        "uploads": uploads, "answered_202": len(jobs), "refused": len(refused),
        "achieved_events_per_s": round(len(jobs) * args.batch / sent_for),
        "uploads_sent_late": late[0], "drained_s_after_last_upload": round(drained_after, 1),
        "job_statuses": dict(zip(statuses[0::2], (int(x) for x in statuses[1::2]))) if statuses else {},
        "loaded": int(row[0]), "loaded_minus_received_ms": {
            "p50": float(row[1] or 0), "p95": float(row[2] or 0), "p99": float(row[3] or 0), "max": float(row[4] or 0)},
        "memory": memory,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    summary = {k: v for k, v in result.items() if k != "memory"}
    summary["memory_drift_pct"] = {k: v["max_drift_after_warm_up_pct"] for k, v in memory.items()}
    print(json.dumps(summary))
    return 0 if not refused else 1


if __name__ == "__main__":
    sys.exit(main())
