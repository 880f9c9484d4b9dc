"""A webhook receiver for the integration tests (driven by tests/support/receiver.rs).

Listens on 127.0.0.1 on a free port, prints `{"port": N}` on one line, then serves forever:
- every request whose path does not start with /_control/ is a delivery: it is recorded, its
  Standard Webhooks signature checked with the reference library (`standardwebhooks`) against
  each --secret, and it is answered with the next response scripted for its path (200
  `{"ok": true}` when none is left);
- POST /_control/script {"path", "responses"} queues responses for a path, GET
  /_control/deliveries[?path=/x] lists deliveries, GET /_control/connections counts the TCP
  connections that never carried a control request.

Usage: python receiver.py --secret whsec_... [--secret whsec_...]
"""

import argparse
import json
import os
import sys
import threading
import time
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from standardwebhooks import Webhook

# The start-up and end the servers the tests run share.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "support"))
from loopback import serve  # noqa: E402

CONTROL = "/_control/"


class Receiver(ThreadingHTTPServer):
    daemon_threads = True  # a hanging (delayed) response never blocks the others nor the exit

    def __init__(self, webhooks):
        super().__init__(("127.0.0.1", 0), Handler)
        self.webhooks = webhooks
        self.lock = threading.Lock()
        self.deliveries = []
        self.scripts = defaultdict(deque)  # path -> FIFO of scripted responses
        self.accepted = 0  # TCP connections accepted
        self.control_sockets = set()  # those of them that carried a control request

    def process_request(self, request, client_address):
        # Runs in the serving thread for each accepted connection, before its handler thread.
        with self.lock:
            self.accepted += 1
        super().process_request(request, client_address)

    def verify(self, body, headers):
        """(verified, error text of the failure) against any of the secrets."""
        errors = []
        for webhook in self.webhooks:
            try:
                webhook.verify(body, headers, json_parse=False)
                return True, None
            except Exception as error:  # malformed headers raise more than WebhookVerificationError
                text = f"{type(error).__name__}: {error}"
                if text not in errors:
                    errors.append(text)
        return False, "; ".join(errors)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real webhook senders use it

    def do_GET(self):
        self.handle_any()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def handle_any(self):
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if url.path.startswith(CONTROL):
            with self.server.lock:
                self.server.control_sockets.add(self.request)
            self.control(url, body)
        else:
            self.delivery(url, body)

    def delivery(self, url, body):
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        verified, verify_error = self.server.verify(body, headers)
        record = {
            "path": url.path,
            "query": url.query,
            "method": self.command,
            "headers": headers,
            "body": body.decode("utf-8", errors="replace"),
            "received_at": time.time(),
            "verified": verified,
            "verify_error": verify_error,
        }
        with self.server.lock:
            self.server.deliveries.append(record)
            queue = self.server.scripts[url.path]
            scripted = queue.popleft() if queue else {"status": 200, "body": '{"ok": true}'}
        time.sleep(scripted.get("delay_seconds") or 0)
        self.answer(scripted["status"], scripted.get("body") or "", scripted.get("headers"))

    def control(self, url, body):
        if self.command == "POST" and url.path == CONTROL + "script":
            try:
                request = json.loads(body)
                path = request["path"]
                responses = [dict(r, status=int(r["status"])) for r in request["responses"]]
            except (ValueError, KeyError, TypeError) as error:
                return self.answer(400, json.dumps({"error": f"bad script: {error!r}"}))
            with self.server.lock:
                self.server.scripts[path].extend(responses)
            self.answer(204, "")
        elif self.command == "GET" and url.path == CONTROL + "deliveries":
            path = parse_qs(url.query).get("path", [None])[0]
            with self.server.lock:
                found = [d for d in self.server.deliveries if path is None or d["path"] == path]
            self.answer(200, json.dumps(found), {"Content-Type": "application/json"})
        elif self.command == "GET" and url.path == CONTROL + "connections":
            with self.server.lock:
                count = self.server.accepted - len(self.server.control_sockets)
            body = json.dumps({"connections": count})
            self.answer(200, body, {"Content-Type": "application/json"})
        else:
            self.answer(404, json.dumps({"error": f"no control {self.command} {url.path}"}))

    def answer(self, status, body, headers=None):
        data = body.encode()
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if status != 204:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if status != 204:
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the sender gave up (timed out) meanwhile

    def log_message(self, format, *args):
        pass  # quiet: the tests read the deliveries instead


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secret", action="append", required=True, help="whsec_... (repeatable)")
    args = parser.parse_args()

    server = Receiver([Webhook(secret) for secret in args.secret])

    serve(server)


if __name__ == "__main__":
    main()
