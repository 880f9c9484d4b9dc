"""A Lambda custom runtime for Python, small enough to read: the loop AWS's own Python runtime runs,
against the Runtime API at AWS_LAMBDA_RUNTIME_API (the tests' emulator, spillway_bench::RuntimeApi).

It imports the handler _HANDLER names (`module.function`, the module found in this directory),
then for each invocation calls it with the event and a context and posts what it returned, or
the error it raised in the shape every Lambda runtime reports errors in:
`{"errorMessage", "errorType", "stackTrace"}`, `errorType` being the exception's class name. A
`lambda` kind's target reads that shape (docs/architecture.md, "Kinds declared in configuration").

Usage: AWS_LAMBDA_RUNTIME_API=127.0.0.1:PORT _HANDLER=targets.handler python tests/lambda/bootstrap.py
"""

import importlib
import json
import os
import sys
import time
import traceback
import urllib.request

API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime"


class Context:
    """The parts of Lambda's context object the handlers use."""

    def __init__(self, headers):
        self.aws_request_id = headers["lambda-runtime-aws-request-id"]
        self.invoked_function_arn = headers.get("lambda-runtime-invoked-function-arn", "")
        self._deadline_ms = int(headers.get("lambda-runtime-deadline-ms", "0"))

    def get_remaining_time_in_millis(self):
        return max(0, self._deadline_ms - int(time.time() * 1000))


def post(path, body, headers=None):
    request = urllib.request.Request(
        f"{API}{path}", data=json.dumps(body).encode(), method="POST", headers=headers or {}
    )
    urllib.request.urlopen(request).read()


def error_of(exception):
    return {
        "errorMessage": str(exception),
        "errorType": type(exception).__name__,
        "stackTrace": traceback.format_tb(exception.__traceback__),
    }


def main():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    module, function = os.environ["_HANDLER"].rsplit(".", 1)
    try:
        handler = getattr(importlib.import_module(module), function)
    except Exception as exception:  # noqa: BLE001 - reported to Lambda, as its runtime does
        post("/init/error", error_of(exception))
        sys.exit(1)
    while True:
        with urllib.request.urlopen(f"{API}/invocation/next") as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            event = json.loads(response.read())
        context = Context(headers)
        try:
            result = handler(event, context)
        except Exception as exception:  # noqa: BLE001 - every error is the invocation's
            error = error_of(exception)
            post(
                f"/invocation/{context.aws_request_id}/error",
                error,
                {"Lambda-Runtime-Function-Error-Type": error["errorType"]},
            )
            continue
        post(f"/invocation/{context.aws_request_id}/response", result)


if __name__ == "__main__":
    main()
