"""An HTTP proxy on loopback between libcloud and moto that can misbehave on purpose.

Rules say, per EC2 Action, how many requests to let through first, then how
many to answer with an EC2 error (status and code), to delay, or to break:
``drop`` forwards the request and loses the answer (the cloud acted, the client
never hears), ``swallow`` loses the request, ``garbage`` answers 200 with a
body no parser reads, ``gone`` makes the endpoint vanish for every later
request. A rule can also send a signal to a process when its request arrives
(``signal``, after ``signal_delay`` seconds): the fault matrix kills commands
at exact points of their run that way. moto cannot produce quota or throttling
errors itself; this is how the tests provoke them.
"""
from __future__ import annotations

import os
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
    fault: str | None = None  # drop, swallow, garbage or gone
    signal: int | None = None  # sent to the pid given by FaultProxy.target when the request arrives
    signal_delay: float = 0.0
    seen: int = 0


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.rules: list[Rule] = []
        self.counts: dict[str, int] = {}
        #: the parameters of each request, by action
        self.params: dict[str, list[dict[str, str]]] = {}
        #: the process that signal rules signal
        self.target: int | None = None
        self.gone = False
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
        # a client killed on purpose leaves a broken pipe behind: not worth a traceback
        self.server.handle_error = lambda request, client_address: None
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
        with self._lock:
            self.params.setdefault(action, []).append({k: v[0] for k, v in params.items()})
        rule = self._rule_for(action)
        if self.gone or (rule is not None and rule.fault in ("swallow", "gone")):
            self.gone = self.gone or rule.fault == "gone"
            request.close_connection = True  # no answer at all: the client sees the connection drop
            return
        if rule is not None and rule.signal and self.target:
            threading.Timer(rule.signal_delay, _send, (self.target, rule.signal)).start()
        if rule is not None and rule.delay:
            time.sleep(rule.delay)
        if rule is not None and rule.fault == "garbage":
            payload = b"\x00\xffnot an answer of any cloud <<<"
            request.send_response(200)
            request.send_header("Content-Type", "text/xml")
            request.send_header("Content-Length", str(len(payload)))
            request.end_headers()
            request.wfile.write(payload)
            return
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
        if rule is not None and rule.fault == "drop":
            request.close_connection = True  # the cloud acted; its answer is lost
            return
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
                    if rule.delay and not (rule.code or rule.fault or rule.signal):
                        return rule
        return None


def _send(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:  # it has finished meanwhile
        pass
