"""Hostile clients of business `evil`, for loadtest/hostile/hostile.sh: each attack is one thread with one keep-alive
connection, sending its requests back to back for the given seconds, and counting the statuses it got.

    python3 attackers.py PORT SECONDS       (HOSTILE_ATTACKS=batch,upload,... picks attacks; default all)

HOSTILE_PACE=N holds each thread of the request floods (batch, unknown, cancel, users) to N requests per second (batch
and users send two per round, so 100 is 50 rounds/s): what the attack costs when something (an admission limit that
makes requests wait) keeps it to a rate.

Attacks (the items are set up by hostile.sh):
  batch     reserve 1,000,000 units of a batch pool item (evil/1), then cancel it
  upload    an 8 MiB text/plain code upload to a one-time pool (evil/2): over the 100k-code limit
  export    the export of a 200,000-code reusable pool (evil/3), read to the end (two threads)
  unknown   GET of an item that does not exist, and a reserve of 50 unknown items
  cancel    cancels of order ids nobody reserved
  users     reserves of one unit by ever new users on a per-user-limited item (evil/4), each cancelled
  spin      (not in the default set) no requests: one core of CPU burnt, the control for the attackers' own CPU
  spin-duty (not in the default set) no requests: CPU burnt in bursts of 48 ms with rests for HOSTILE_DUTY_PERCENT
            (1-100, default 25: 144 ms, a quarter of a core, the shape of the bulk gate's share of 25 % with the
            upload's 48 ms parse), the control for a service thread doing that
  upload-sink (not in the default set) the upload attack's requests sent to sink.py on port HOSTILE_SINK_PORT instead
            of the service: the control for what moving 8 MiB bodies over loopback costs this machine
"""
import http.client
import json
import os
import sys
import threading
import time

PORT, SECONDS = int(sys.argv[1]), float(sys.argv[2])
SINK_PORT = int(os.environ.get("HOSTILE_SINK_PORT", "8088"))
DEADLINE = time.monotonic() + SECONDS
counts = {}
lock = threading.Lock()


def attack(name):
    def run(body):
        def loop():
            port = SINK_PORT if name == "upload-sink" else PORT
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            n = 0
            pace = float(os.environ.get("HOSTILE_PACE", "0"))
            next_at = time.monotonic()
            while time.monotonic() < DEADLINE:
                try:
                    for status in body(connection, n):
                        if pace > 0 and name in ("batch", "unknown", "cancel", "users"):
                            # the next request's time; one that fell behind (a slow answer) starts anew, no burst
                            next_at = max(next_at + 1 / pace, time.monotonic())
                            delay = next_at - time.monotonic()
                            if delay > 0:
                                time.sleep(delay)
                        with lock:
                            key = (name, status)
                            counts[key] = counts.get(key, 0) + 1
                except (OSError, http.client.HTTPException):
                    with lock:
                        counts[(name, "error")] = counts.get((name, "error"), 0) + 1
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                n += 1
        return loop
    return run


def send(connection, method, path, body=None, content_type="application/json"):
    headers = {"Content-Type": content_type} if body is not None else {}
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    connection.request(method, path, body, headers)
    response = connection.getresponse()
    while response.read(1 << 16):
        pass
    return response.status


@attack("batch")
def batch(connection, n):
    order = f"evil-batch-{n}"
    yield send(connection, "POST", "/v1/reservations",
               {"orderId": order, "bizId": "evil", "items": [{"skuId": 1, "quantity": 1000000}]})
    yield send(connection, "POST", f"/v1/businesses/evil/reservations/{order}/cancel")


UPLOAD = "".join(f"CODE-{i:010d}-{'x' * 40}\n" for i in range(150_000)).encode()[: 8 * 1024 * 1024 - 1]


def upload_request(connection, n):
    yield send(connection, "POST", "/v1/stock/evil/2/codes", UPLOAD, content_type="text/plain")


upload = attack("upload")(upload_request)
upload_sink = attack("upload-sink")(upload_request)


@attack("export")
def export(connection, n):
    yield send(connection, "GET", "/v1/stock/evil/3/codes")


@attack("unknown")
def unknown(connection, n):
    yield send(connection, "GET", f"/v1/stock/evil/{1_000_000 + n}")
    items = [{"skuId": 2_000_000 + 50 * n + k, "quantity": 1} for k in range(50)]
    yield send(connection, "POST", "/v1/reservations", {"orderId": f"evil-unknown-{n}", "bizId": "evil", "items": items})


@attack("cancel")
def cancel(connection, n):
    yield send(connection, "POST", f"/v1/businesses/evil/reservations/evil-never-{n}/cancel")


@attack("users")
def users(connection, n):
    order = f"evil-user-{n}"
    yield send(connection, "POST", "/v1/reservations",
               {"orderId": order, "bizId": "evil", "userId": f"user-{n}", "items": [{"skuId": 4, "quantity": 1}]})
    yield send(connection, "POST", f"/v1/businesses/evil/reservations/{order}/cancel")


def spin():
    """The control: one core of CPU burnt in this process, no request sent (what the attackers' own CPU costs the
    victim on a machine they share)."""
    while time.monotonic() < DEADLINE:
        sum(range(10000))


def spin_duty():
    """The control for bulk work in bursts: 48 ms of CPU, then a rest that keeps it at HOSTILE_DUTY_PERCENT."""
    duty = min(max(float(os.environ.get("HOSTILE_DUTY_PERCENT", "25")), 1), 100) / 100
    while time.monotonic() < DEADLINE:
        burst = time.monotonic() + 0.048
        while time.monotonic() < burst:
            sum(range(1000))
        time.sleep(0.048 * (1 - duty) / duty)


# HOSTILE_ATTACKS=batch,export runs only those (default: every attack; export has two threads)
chosen = [name for name in (os.environ.get("HOSTILE_ATTACKS") or "batch,upload,export,unknown,cancel,users").split(",") if name]
attacks = {"batch": [batch], "upload": [upload], "export": [export, export], "unknown": [unknown], "cancel": [cancel],
           "users": [users], "spin": [spin], "spin-duty": [spin_duty], "upload-sink": [upload_sink]}
threads = [threading.Thread(target=loop) for name in chosen for loop in attacks[name]]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
for (name, status), count in sorted(counts.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
    print(f"attack {name:8s} {status}: {count}")
