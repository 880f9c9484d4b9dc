"""A SigV4-checking stand-in for a Spillway stage with IAM authorization (for cli/tests/load.rs).

Listens on 127.0.0.1 on a free port, prints `{"port": N}` on one line, then serves forever:
- every request but GET /stats must be signed with AWS SigV4 for `execute-api` in --region with
  the test's credentials, as API Gateway requires of a stage deployed with ApiAuth=AWS_IAM. The
  signature is recomputed with botocore (a signer Spillway does not use), from the request as
  received: method, path, query, the headers the request says it signed, the body, and its own
  X-Amz-Date. A missing or bad one gets 403 with an API Gateway-like `{"message": ...}`;
- a verified request reaches a tiny Spillway: POST /jobs answers 202 with a job id and a Location
  header, GET /jobs/{id}?wait=N answers 200 with the job `succeeded`, anything else 404;
- GET /stats (unsigned) answers `{"verified": n, "rejected": m, "reasons": {reason: count},
  "routes": {"POST /jobs": n, "GET /jobs/{id}?wait": n, ...}}`, the routes of the verified
  requests with the names of their query parameters.

Usage: python verifier.py [--region us-east-1] [--access-key-id ID --secret-access-key KEY
       [--session-token TOKEN]]; the credentials default to AWS_ACCESS_KEY_ID,
       AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN.
"""

import argparse
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# The start-up and end the servers the tests run share.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "support"))
from loopback import serve  # noqa: E402

SERVICE = "execute-api"
ALGORITHM = "AWS4-HMAC-SHA256"
# API Gateway refuses a request whose X-Amz-Date is further than this from its clock.
MAX_SKEW = timedelta(minutes=5)
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
JOB_PATH = re.compile(r"^/jobs/([0-9a-f-]{36})$")


class Rejected(Exception):
    """A request the verifier refuses: `reason` is counted, `message` answered."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason
        self.message = message


class Verifier(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, credentials, region):
        super().__init__(("127.0.0.1", 0), Handler)
        self.credentials = credentials
        self.region = region
        self.lock = threading.Lock()
        self.verified = 0
        self.reasons = Counter()
        self.routes = Counter()
        self.jobs = {}  # id -> the job's document

    def verify(self, method, target, headers, body):
        """Raises Rejected unless the request is signed with the test's credentials."""
        authorization = headers.get("authorization")
        if authorization is None:
            raise Rejected("missing", "Missing Authentication Token")
        algorithm, _, fields = authorization.partition(" ")
        parts = {}
        for field in fields.split(","):
            name, _, value = field.strip().partition("=")
            parts[name] = value
        if algorithm != ALGORITHM or not {"Credential", "SignedHeaders", "Signature"} <= set(parts):
            raise Rejected("malformed", f"Authorization header requires {ALGORITHM} with "
                                        "Credential, SignedHeaders and Signature")

        scope = parts["Credential"].split("/")
        if len(scope) != 5:
            raise Rejected("malformed", "Credential must be KEY/DATE/REGION/SERVICE/aws4_request")
        key, day, region, service, terminator = scope
        if key != self.credentials.access_key:
            raise Rejected("access-key", "The security token included in the request is invalid.")
        if region != self.region or service != SERVICE or terminator != "aws4_request":
            raise Rejected("scope", f"Credential should be scoped to a valid region and service: "
                                    f"expected {self.region}/{SERVICE}, got {region}/{service}")

        stamp = headers.get("x-amz-date", "")
        try:
            signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            raise Rejected("malformed", f"X-Amz-Date {stamp!r} is not YYYYMMDDTHHMMSSZ") from None
        if stamp[:8] != day:
            raise Rejected("scope", f"Credential date {day} is not the date of X-Amz-Date {stamp}")
        if abs(datetime.now(timezone.utc) - signed_at) > MAX_SKEW:
            raise Rejected("expired", f"Signature expired: {stamp} is more than 5 minutes away")

        signed = parts["SignedHeaders"].split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            raise Rejected("unsigned-header", "SignedHeaders must include host and x-amz-date")
        missing = [name for name in signed if name not in headers]
        if missing:
            raise Rejected("malformed", f"signed headers not in the request: {missing}")
        token = self.credentials.token
        if token is not None and (headers.get("x-amz-security-token") != token
                                  or "x-amz-security-token" not in signed):
            raise Rejected("token", "The security token included in the request is invalid.")
        # botocore takes a signed x-amz-content-sha256 header as the payload's hash, so the body
        # itself must match it for the signature to cover the body.
        declared = headers.get("x-amz-content-sha256")
        if declared is not None and declared != hashlib.sha256(body).hexdigest():
            raise Rejected("payload", "x-amz-content-sha256 is not the body's SHA-256")

        # The canonical request botocore makes of exactly what was received and signed. The
        # URL is http://, so botocore hashes the body into it.
        request = AWSRequest(
            method=method,
            url=f"http://{headers['host']}{target}",
            headers={name: headers[name] for name in signed},
            data=body,
        )
        request.context["timestamp"] = stamp
        signer = SigV4Auth(self.credentials, SERVICE, self.region)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, parts["Signature"]):
            raise Rejected("mismatch", MISMATCH)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as API Gateway and spillway load use it

    def do_GET(self):
        self.handle_any()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def handle_any(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        if self.command == "GET" and url.path == "/stats":
            return self.stats()
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            # Repeated headers are joined with commas, as SigV4's canonical form has them.
            headers[name] = f"{headers[name]},{value.strip()}" if name in headers else value.strip()
        try:
            self.server.verify(self.command, self.path, headers, body)
        except Rejected as rejected:
            with self.server.lock:
                self.server.reasons[rejected.reason] += 1
            return self.answer(403, {"message": rejected.message})
        route = "/jobs/{id}" if JOB_PATH.match(url.path) else url.path
        query = ",".join(sorted({name for name, _ in parse_qsl(url.query)}))
        with self.server.lock:
            self.server.verified += 1
            self.server.routes[f"{self.command} {route}" + (f"?{query}" if query else "")] += 1
        self.spillway(url, body)

    def spillway(self, url, body):
        if self.command == "POST" and url.path == "/jobs":
            try:
                request = json.loads(body)
                kind, payload = request["kind"], request["payload"]
            except (ValueError, KeyError, TypeError) as error:
                return self.problem(400, "invalid-request", f"bad job: {error!r}")
            now = datetime.now(timezone.utc)
            job_id = uuid7(now)
            deadline = timestamp(now + timedelta(hours=1))
            job = {
                "id": job_id, "kind": kind, "status": "succeeded", "attempts": 1,
                "created_at": timestamp(now),
                "updated_at": timestamp(now + timedelta(milliseconds=5)),
                "deadline": deadline, "result": payload,
            }
            with self.server.lock:
                self.server.jobs[job_id] = job
            status_url = f"/jobs/{job_id}"
            accepted = {"id": job_id, "status": "pending", "status_url": status_url,
                        "deadline": deadline}
            return self.answer(202, accepted, {"Location": status_url})
        match = JOB_PATH.match(url.path)
        if self.command == "GET" and match:
            with self.server.lock:
                job = self.server.jobs.get(match.group(1))
            if job is None:
                return self.problem(404, "not-found", f"no job {match.group(1)}")
            return self.answer(200, job)
        self.problem(404, "not-found", f"no route {self.command} {url.path}")

    def stats(self):
        with self.server.lock:
            stats = {
                "verified": self.server.verified,
                "rejected": sum(self.server.reasons.values()),
                "reasons": dict(self.server.reasons),
                "routes": dict(self.server.routes),
            }
        self.answer(200, stats)

    def problem(self, status, name, detail):
        problem = {"type": f"urn:spillway:problem:{name}", "title": name.replace("-", " "),
                   "status": status, "detail": detail}
        self.answer(status, problem, {"Content-Type": "application/problem+json"})

    def answer(self, status, document, headers=None):
        data = json.dumps(document).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format, *args):
        pass  # quiet: the tests read /stats instead


def uuid7(now):
    """A UUIDv7 string: 48 bits of Unix milliseconds, version 7, variant 10, random bits."""
    value = (int(now.timestamp() * 1000) << 80) | int.from_bytes(secrets.token_bytes(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def timestamp(moment):
    """RFC 3339 in UTC with milliseconds, as Spillway writes them."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", default=os.environ.get("AWS_REGION") or "us-east-1")
    parser.add_argument("--access-key-id", default=os.environ.get("AWS_ACCESS_KEY_ID"))
    parser.add_argument("--secret-access-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY"))
    parser.add_argument("--session-token", default=os.environ.get("AWS_SESSION_TOKEN") or None)
    args = parser.parse_args()
    if not args.access_key_id or not args.secret_access_key:
        parser.error("the credentials to verify with are missing: pass --access-key-id and "
                     "--secret-access-key, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")

    credentials = Credentials(args.access_key_id, args.secret_access_key, args.session_token)
    server = Verifier(credentials, args.region)

    serve(server)


if __name__ == "__main__":
    main()
