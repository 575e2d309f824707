"""Load check for `mailer serve`: N one-click unsubscribe POSTs from this (second) process.

    python bench/unsubscribe_load.py --base http://127.0.0.1:PORT --secret-file .mailer-secret \
        --first 1 --count 2000 --concurrency 16

Each worker thread keeps one HTTP/1.1 connection open and posts
``List-Unsubscribe=One-Click`` to ``/u/<token>`` for its share of the customer
ids. Prints one JSON object: counts by status, failures, and latency
(median, p90, p99, max in milliseconds) and the wall time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from mailer.compose.tokens import make_token

BODY = b"List-Unsubscribe=One-Click"
HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


def run(base: str, secret: str, ids: list[int], concurrency: int, timeout: float) -> dict[str, object]:
    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(mine: list[int]) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        for customer_id in mine:
            path = f"{parts.path.rstrip('/')}/u/{make_token(secret, customer_id)}"
            started = time.perf_counter()
            try:
                connection.request("POST", path, body=BODY, headers=HEADERS)
                response = connection.getresponse()
                response.read()
                outcome = str(response.status)
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
                outcome = "error"
                with lock:
                    errors.append(f"{customer_id}: {type(exc).__name__}: {exc}")
            elapsed = time.perf_counter() - started
            with lock:
                statuses[outcome] += 1
                latencies.append(elapsed)
        connection.close()

    shares = [ids[i::concurrency] for i in range(concurrency)]
    threads = [threading.Thread(target=worker, args=(share,)) for share in shares if share]
    wall = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - wall
    latencies.sort()

    def ms(q: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)

    return {
        "requests": len(ids),
        "statuses": dict(statuses),
        "errors": errors[:10],
        "concurrency": concurrency,
        "wall_seconds": round(wall, 3),
        "per_second": round(len(ids) / wall, 1) if wall else None,
        "latency_ms": {
            "median": round(1000 * statistics.median(latencies), 2) if latencies else None,
            "p90": ms(0.90) if latencies else None,
            "p99": ms(0.99) if latencies else None,
            "max": ms(1.0) if latencies else None,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="where `mailer serve` listens, e.g. http://127.0.0.1:8025")
    parser.add_argument("--secret-file", type=Path, required=True, help="the [sender] secret file")
    parser.add_argument("--first", type=int, default=1, help="first customer id")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=60.0, help="per request, seconds (a guard, not a target)")
    args = parser.parse_args(argv)
    secret = args.secret_file.read_text(encoding="utf-8").strip()
    ids = list(range(args.first, args.first + args.count))
    report = run(args.base, secret, ids, args.concurrency, args.timeout)
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0 if report["statuses"] == {"200": len(ids)} else 1


if __name__ == "__main__":
    raise SystemExit(main())
