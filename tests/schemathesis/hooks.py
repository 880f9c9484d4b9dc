"""Schemathesis hooks for the check of docs/openapi.yaml against `spillway dev`
(cli/tests/openapi.rs runs it; SCHEMATHESIS_HOOKS names this file).

The hook below changes a generated `POST /jobs`, and each job of a generated `POST /jobs/batch`,
only in ways the document allows, and
Schemathesis validates a request a hook changed again, so whether it counts as valid or invalid
data stays right:

- every webhook and callback URL points at the test's receiver on loopback
  (SPILLWAY_WEBHOOK_SINK, host:port), never at the hosts Hypothesis makes up, some of which
  exist; which destinations the SSRF guard refuses (`422`) is a policy no JSON Schema can state,
  and the integration and hostile-input tests check it;
- a `sleep` job sleeps at most 50 ms, and a scheduled job is due within a second (a later
  `run_at` or `delay_seconds` is brought forward), so jobs end quickly and long polls return
  early;
- a batch holds at most 10 jobs (a longer one within the document's 100 is cut to its first
  10): thousands of generated jobs would keep the consumers busy past the long polls' waits
  that other requests make, and the 100-job bound is held by the unit and integration tests;
- each valid `Idempotency-Key` (and a batch job's `idempotency_key`) is made unique: the same
  key with another body is rightly `422`, which a generator that draws keys independently of
  bodies would otherwise report.
"""

import itertools
import os
import re
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import schemathesis

SINK = os.environ["SPILLWAY_WEBHOOK_SINK"]
MAX_URL = 2048
KEY = re.compile(r"[\x20-\x7E]{1,255}")
# Unique across runs too, should one server outlive a run.
_RUN = uuid.uuid4().hex[:8]
_unique = itertools.count()


def _to_sink(url):
    if not isinstance(url, str):
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return url
    moved = f"http://{SINK}{parts.path}"
    return moved if len(moved) <= MAX_URL else f"http://{SINK}/"


def _unique_key(key):
    if not isinstance(key, str) or not KEY.fullmatch(key):
        return key
    suffix = f"-{_RUN}-{next(_unique)}"
    return key[: 255 - len(suffix)] + suffix


def _soon(body):
    delay = body.get("delay_seconds")
    if isinstance(delay, (int, float)) and not isinstance(delay, bool) and 1 < delay <= 86_400:
        if float(delay).is_integer():
            body["delay_seconds"] = 1
    run_at = body.get("run_at")
    if isinstance(run_at, str):
        try:
            due = datetime.fromisoformat(run_at.replace("z", "Z").replace("Z", "+00:00"))
        except ValueError:
            return
        if due.tzinfo is None or due.year < 1970:
            return
        soon = datetime.now(timezone.utc) + timedelta(seconds=1)
        if due > soon:
            body["run_at"] = soon.strftime("%Y-%m-%dT%H:%M:%SZ")


def _job(body):
    if not isinstance(body, dict):
        return
    _soon(body)
    if "callback_url" in body:
        body["callback_url"] = _to_sink(body["callback_url"])
    payload = body.get("payload")
    if isinstance(payload, dict):
        if body.get("kind") == "webhook" and "url" in payload:
            payload["url"] = _to_sink(payload["url"])
        ms = payload.get("ms")
        number = isinstance(ms, (int, float)) and not isinstance(ms, bool)
        if body.get("kind") == "sleep" and number and 50 < ms <= 900_000:
            if float(ms).is_integer():
                payload["ms"] = 50


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.method.upper() != "POST" or case.path not in ("/jobs", "/jobs/batch"):
        return
    body = case.body
    if case.path == "/jobs/batch":
        jobs = body.get("jobs") if isinstance(body, dict) else None
        if isinstance(jobs, list) and 10 < len(jobs) <= 100:
            del jobs[10:]
        for job in jobs if isinstance(jobs, list) else []:
            _job(job)
            if isinstance(job, dict) and "idempotency_key" in job:
                job["idempotency_key"] = _unique_key(job["idempotency_key"])
    else:
        _job(body)
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key":
            headers[name] = _unique_key(headers[name])
