"""How the Python servers the tests start (tests/webhooks/receiver.py, tests/sigv4/verifier.py)
run, as tests/support/python.rs expects: the test reads the port from their first line and kills
them by PID when it is done.
"""

import json
import os
import signal
import sys
import threading
import time


def serve(server):
    """Serves `server`, an http.server listening on 127.0.0.1, until the test stops it.

    Prints `{"port": N}` on one line, then serves forever; exits on SIGTERM, and also when the
    test process that started it dies without killing it.
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    parent = os.getppid()

    def watch_parent():
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()

    print(json.dumps({"port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
