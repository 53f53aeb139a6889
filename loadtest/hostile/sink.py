"""The upload control of loadtest/hostile/hostile.sh: an HTTP/1.1 server that reads each request's body to the end
and answers 422 with an empty body (after HOSTILE_SINK_DELAY_MS, default 0, so that it can be held to the service's
rate of uploads), on one thread per connection, at the normal priority. The `upload-sink` attack
sends attackers.py's 8 MiB uploads here instead of to the service: what the victim loses then is what moving the bytes
over loopback costs this machine, whatever the service does with them.

    python3 sink.py PORT
"""
import os
import socket
import sys
import threading
import time

DELAY = float(os.environ.get("HOSTILE_SINK_DELAY_MS", "0")) / 1000


def serve(connection):
    with connection:
        reader = connection.makefile("rb", buffering=1 << 16)
        while True:
            length = None
            line = reader.readline()
            if not line:
                return
            while line not in (b"\r\n", b"\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
                line = reader.readline()
            remaining = length or 0
            while remaining > 0:
                chunk = reader.read(min(remaining, 1 << 16))
                if not chunk:
                    return
                remaining -= len(chunk)
            time.sleep(DELAY)
            connection.sendall(b"HTTP/1.1 422 Unprocessable Content\r\nContent-Length: 0\r\n\r\n")


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen(16)
while True:
    accepted, _ = listener.accept()
    threading.Thread(target=serve, args=(accepted,), daemon=True).start()
