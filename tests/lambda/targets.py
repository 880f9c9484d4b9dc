"""The Lambda function the deployment test declares as a `lambda` kind's target: it does what the
job's payload asks (`act`), so one function shows every outcome.

- `succeed`: returns the event it was given, as the job's result.
- `fail_until`: raises a RuntimeError (retryable) until the job's attempt reaches `attempt`.
- `permanent`: raises PermanentError with `message`: the job fails with it, and is not retried.
- `sleep_until`: sleeps `seconds` (past the function's timeout) until the attempt reaches `attempt`.
- `refuse_kind`: raises PermanentError when the job's kind is `kind` (one target of a fan-out
  whose targets are all this function), and returns the kind otherwise.
"""

import time


class PermanentError(Exception):
    """The job will fail the same way every time: Spillway fails it without a retry."""


def handler(event, context):
    payload = event["payload"]
    act = payload["act"]
    attempt = event["attempt"]
    if act == "succeed":
        return {"event": event}
    if act == "fail_until":
        if attempt < payload["attempt"]:
            raise RuntimeError(f"the store is not ready on attempt {attempt}")
        return {"succeeded_on": attempt}
    if act == "permanent":
        raise PermanentError(payload["message"])
    if act == "refuse_kind":
        if event["kind"] == payload["kind"]:
            raise PermanentError(f"{event['kind']} refuses the job")
        return {"kind": event["kind"]}
    if act == "sleep_until":
        if attempt < payload["attempt"]:
            time.sleep(payload["seconds"])
        return {"woke_on": attempt}
    raise PermanentError(f"unknown act {act!r}")
