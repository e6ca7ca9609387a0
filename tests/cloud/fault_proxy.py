"""An HTTP proxy on loopback between libcloud and moto that can misbehave on purpose.

Rules say, per EC2 Action, how many requests to let through first, then how
many to answer with an EC2 error (status and code) or to delay. moto cannot
produce quota or throttling errors itself; this is how the tests provoke them.
"""
from __future__ import annotations

import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Rule:
    action: str
    code: str | None = None  # EC2 error code, e.g. InstanceLimitExceeded
    status: int = 400
    after: int = 0  # let this many matching requests through first
    times: int = 10**9  # then misbehave this many times
    delay: float = 0.0  # seconds to wait before forwarding
    seen: int = 0


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.rules: list[Rule] = []
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                proxy._handle(self, None)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                proxy._handle(self, self.rfile.read(length))

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, request, body: bytes | None):
        params = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
        if body:
            params.update(urllib.parse.parse_qs(body.decode(errors="replace")))
        action = (params.get("Action") or [""])[0]
        rule = self._rule_for(action)
        if rule is not None and rule.delay:
            time.sleep(rule.delay)
        if rule is not None and rule.code:
            payload = (f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{rule.code}'
                       f"</Code><Message>injected by the test proxy: {rule.code}</Message></Error>"
                       "</Errors><RequestID>fault</RequestID></Response>").encode()
            request.send_response(rule.status)
            request.send_header("Content-Type", "text/xml")
            request.send_header("Content-Length", str(len(payload)))
            request.end_headers()
            request.wfile.write(payload)
            return
        forward = urllib.request.Request(self.upstream + request.path, data=body,
                                         method=request.command,
                                         headers={k: v for k, v in request.headers.items()
                                                  if k.lower() not in ("host", "content-length")})
        try:
            with urllib.request.urlopen(forward, timeout=60) as response:
                status, headers, payload = response.status, response.headers, response.read()
        except urllib.error.HTTPError as err:
            status, headers, payload = err.code, err.headers, err.read()
        request.send_response(status)
        for key, value in headers.items():
            if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                request.send_header(key, value)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)

    def _rule_for(self, action: str) -> Rule | None:
        with self._lock:
            self.counts[action] = self.counts.get(action, 0) + 1
            for rule in self.rules:
                if rule.action in (action, "*"):
                    rule.seen += 1
                    if rule.after < rule.seen <= rule.after + rule.times:
                        return rule
                    if rule.delay and not rule.code:
                        return rule
        return None
