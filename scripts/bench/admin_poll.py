#!/usr/bin/env python3
"""admin_poll.py DATA_DIR COUNT_FILE -- polls /metrics and /status of a
running Postern's admin API, each 10 times a second, over one keep-alive
connection (as Prometheus and a dashboard would), until killed. Writes the
number of answers by status to COUNT_FILE at exit.

A process per request (curl) would cost the machine more than the server
spends answering, and the bench would measure the poller, not Postern.
"""

import http.client
import json
import signal
import sys
import time

data_dir, count_file = sys.argv[1], sys.argv[2]
address = json.load(open(f"{data_dir}/run/admin.json"))["address"]
token = open(f"{data_dir}/admin.token").read().strip()
host, port = address.rsplit(":", 1)
counts: dict[int, int] = {}
running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=5)
headers = {"Authorization": f"Bearer {token}"}
next_at = time.monotonic()
while running:
    for path in ("/metrics", "/status"):
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            counts[response.status] = counts.get(response.status, 0) + 1
        except (OSError, http.client.HTTPException):
            counts[0] = counts.get(0, 0) + 1
            connection.close()
            connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=5)
    next_at += 0.1
    time.sleep(max(0.0, next_at - time.monotonic()))
with open(count_file, "w") as out:
    for status, n in sorted(counts.items()):
        out.write(f"{status} {n}\n")
