"""Schemathesis hooks for the check of docs/openapi.yaml against `spillway dev`
(cli/tests/openapi.rs runs it; SCHEMATHESIS_HOOKS names this file).

The hook below changes a generated `POST /jobs` only in ways the document allows, and
Schemathesis validates a request a hook changed again, so whether it counts as valid or invalid
data stays right:

- every webhook and callback URL points at the test's receiver on loopback
  (SPILLWAY_WEBHOOK_SINK, host:port), never at the hosts Hypothesis makes up, some of which
  exist; which destinations the SSRF guard refuses (`422`) is a policy no JSON Schema can state,
  and the integration and hostile-input tests check it;
- a `sleep` job sleeps at most 50 ms, so jobs end quickly and long polls return early;
- each valid `Idempotency-Key` is made unique: the same key with another body is rightly `422`,
  which a generator that draws keys independently of bodies would otherwise report;
- a `run_at` that is a date-time becomes a time just past, and a `delay_seconds` at most 1: how
  far ahead a job may be scheduled (a day from now) is a bound on the clock, which no JSON Schema
  can state, and jobs due at once keep long polls short; the submit tests check the bound.
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


def _is_date_time(text):
    if not isinstance(text, str):
        return False
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return True


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


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.method.upper() != "POST" or case.path != "/jobs":
        return
    body = case.body
    if isinstance(body, dict):
        if _is_date_time(body.get("run_at")):
            past = datetime.now(timezone.utc) - timedelta(seconds=1)
            body["run_at"] = past.strftime("%Y-%m-%dT%H:%M:%SZ")
        delay = body.get("delay_seconds")
        if isinstance(delay, int) and not isinstance(delay, bool) and 1 < delay <= 86_400:
            body["delay_seconds"] = 1
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
    headers = case.headers or {}
    for name in list(headers):
        key = headers[name]
        if name.lower() == "idempotency-key" and isinstance(key, str) and KEY.fullmatch(key):
            suffix = f"-{_RUN}-{next(_unique)}"
            headers[name] = key[: 255 - len(suffix)] + suffix
