#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of a real receiver (VictoriaMetrics'
remote-write, rotel's OTLP/HTTP), for what no real receiver does on demand:
answer slowly, or answer 5xx / 429 for a while.

usage: fault_proxy.py LISTEN_PORT UPSTREAM_HOST:PORT

Every request is forwarded to the upstream as it came (method, path, headers,
body) and its answer relayed, except as the current fault says. The fault is
set with a request to the proxy itself:

  GET /__fault?delay_ms=300            answer each request 300 ms after the upstream answered
  GET /__fault?delay_ms=0-600          a random delay in that range (per request)
  GET /__fault?status=503&count=5      the next 5 requests get 503 (not forwarded)
  GET /__fault?status=429&count=5&retry_after=1
  GET /__fault?reset=1                 no fault
  GET /__stats                         forwarded=N faulted=N (plain text)

The delay comes after the upstream has stored the request and before the
answer reaches the sender: the window in which a sender that gives up on a
request it already delivered would send it twice.
"""

import http.client
import random
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"delay": (0, 0), "status": 0, "count": 0, "retry_after": None,
         "forwarded": 0, "faulted": 0}
HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = ("127.0.0.1", 0)

    def log_message(self, *args):
        pass

    def control(self):
        url = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        with LOCK:
            if url.path == "/__fault":
                if "reset" in q:
                    STATE.update(delay=(0, 0), status=0, count=0, retry_after=None)
                if "delay_ms" in q:
                    lo, _, hi = q["delay_ms"].partition("-")
                    STATE["delay"] = (int(lo), int(hi or lo))
                if "status" in q:
                    STATE["status"] = int(q["status"])
                    STATE["count"] = int(q.get("count", "1"))
                    STATE["retry_after"] = q.get("retry_after")
            body = "forwarded={} faulted={} delay={}-{} status={} count={}\n".format(
                STATE["forwarded"], STATE["faulted"], STATE["delay"][0], STATE["delay"][1],
                STATE["status"], STATE["count"]).encode()
        self.answer(200, [("Content-Type", "text/plain")], body)

    def answer(self, status, headers, body):
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def forward(self):
        if self.path.startswith("/__"):
            return self.control()
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        with LOCK:
            if STATE["count"] > 0:
                STATE["count"] -= 1
                STATE["faulted"] += 1
                status, ra = STATE["status"], STATE["retry_after"]
            else:
                status, ra = 0, None
            lo, hi = STATE["delay"]
        if status:
            headers = [("Content-Type", "text/plain")]
            if ra is not None:
                headers.append(("Retry-After", ra))
            return self.answer(status, headers, b"injected by fault_proxy\n")
        try:
            conn = http.client.HTTPConnection(*self.upstream, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            conn.request(self.command, self.path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            got = (r.status, r.getheaders(), data)
            conn.close()
        except OSError as e:
            got = (502, [("Content-Type", "text/plain")], ("upstream: %s\n" % e).encode())
        with LOCK:
            STATE["forwarded"] += 1
        delay = random.randint(lo, hi) if hi > lo else lo
        if delay:
            time.sleep(delay / 1000)
        self.answer(*got)

    do_GET = do_POST = do_PUT = forward


def main():
    port, upstream = int(sys.argv[1]), sys.argv[2]
    host, _, up_port = upstream.rpartition(":")
    Handler.upstream = (host or "127.0.0.1", int(up_port))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("fault_proxy listening on 127.0.0.1:%d -> %s" % (port, upstream), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
