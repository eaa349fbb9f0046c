#!/usr/bin/env python3
"""A loopback stand-in for the AWS Lambda Runtime API, so that a test can run
a Lambda function's real binary (`byok-config-rule`) outside Lambda.

    fake-lambda-runtime.py --events FILE --results FILE

FILE (--events) is a JSON array of invocation payloads. Prints the port it
listens on (127.0.0.1 only), then serves until killed:

  GET  /2018-06-01/runtime/invocation/next      the next payload, with the
       Lambda-Runtime-Aws-Request-Id (inv-0, inv-1, ...), -Deadline-Ms,
       -Invoked-Function-Arn and -Trace-Id headers; once every payload was
       handed out, it holds the request open (the function waits, as in Lambda)
  POST /2018-06-01/runtime/invocation/ID/response   202; recorded
  POST /2018-06-01/runtime/invocation/ID/error      202; recorded
  POST /2018-06-01/runtime/init/error               202; recorded

Each record is appended to --results as one JSON line:
{"id", "kind" (response | error | init-error), "error_type", "body"} with the
body parsed as JSON when it is JSON. Python's standard library only.
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime/"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:byok-config-rule"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", required=True)
    ap.add_argument("--results", required=True)
    a = ap.parse_args()
    with open(a.events) as f:
        events = json.load(f)
    if not isinstance(events, list):
        raise SystemExit("--events: expected a JSON array of payloads")
    lock = threading.Lock()
    state = {"next": 0}

    def record(entry):
        with lock, open(a.results, "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status, body=b"", headers=()):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path != PREFIX + "invocation/next":
                return self.reply(404, b'{"errorType":"NotFound"}')
            with lock:
                n = state["next"]
                state["next"] += 1
            if n >= len(events):
                while True:  # as Lambda: no invocation until one comes
                    time.sleep(3600)
            body = json.dumps(events[n]).encode()
            deadline = int(time.time() * 1000) + 300_000
            self.reply(200, body, [
                ("Content-Type", "application/json"),
                ("Lambda-Runtime-Aws-Request-Id", f"inv-{n}"),
                ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                ("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN),
                ("Lambda-Runtime-Trace-Id", f"Root=1-00000000-{n:024x};Sampled=0"),
            ])

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("utf-8", "replace")
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
            parts = self.path[len(PREFIX):].split("/") if self.path.startswith(PREFIX) else []
            if parts == ["init", "error"]:
                kind, rid = "init-error", None
            elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                kind, rid = parts[2], parts[1]
            else:
                return self.reply(404, b'{"errorType":"NotFound"}')
            record({
                "id": rid,
                "kind": kind,
                "error_type": self.headers.get("Lambda-Runtime-Function-Error-Type"),
                "body": body,
            })
            self.reply(202, b'{"status":"OK"}', [("Content-Type", "application/json")])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
