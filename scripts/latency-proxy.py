#!/usr/bin/env python3
"""A loopback HTTP/1.1 relay in front of LocalStack: adds latency, counts KMS
requests per operation, and injects faults. Used by scripts/bench-batch.sh (a
stand-in for the round trip to a distant KMS Region) and by the bastion tests
(throttling, server errors and dropped connections).

    latency-proxy.py --target-port 4566 [--listen-port 0] [--delay-ms 60]
        [--counts FILE] [--fault OP:KIND:RATE]... [--seed N]
        [--max-faults N] [--max-faults-per-request N] [--log FILE]

prints the port it listens on, then relays until killed. It listens on and
connects to 127.0.0.1 only.

Every request is parsed (Content-Length bodies; KMS requests are small JSON),
its operation taken from `X-Amz-Target: TrentService.OPERATION`, and counted;
with --counts the counts are rewritten to FILE (JSON) after every request:
{"requests": {OP: n}, "forwarded": {OP: n}, "faults": {OP:KIND: n}}.
"forwarded" counts what reached LocalStack (so a test can show that a bundle
was imported once). With --log every request is appended to FILE as one JSON
line, {"method", "path", "target" (X-Amz-Target), "body"}, the body parsed as
JSON when it is JSON, else as a string (tests/iam_policy.rs checks each one
against the IAM policy of the role that sent it).

Faults, chosen per request with probability RATE for operation OP (`*` for
any) from a seeded generator, and bounded: at most --max-faults in all and at
most --max-faults-per-request for the same request body (so the client's
retries get through):
  throttle      answer 400 {"__type": "ThrottlingException"} without forwarding
  http500       answer 500 InternalFailure without forwarding
  http503       answer 503 ServiceUnavailable without forwarding
  reset-before  close the connection without forwarding
  reset-after   forward, let LocalStack answer, then close the connection
                without relaying the answer (a lost response: KMS applied it)
  delay         wait 2 s more before forwarding
"""

import argparse
import asyncio
import hashlib
import json
import os
import random
import sys

KINDS = ("throttle", "http500", "http503", "reset-before", "reset-after", "delay")
MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024


class Faults:
    def __init__(self, specs, seed, max_total, max_per_request):
        self.rules = []
        for spec in specs:
            try:
                op, kind, rate = spec.rsplit(":", 2)
                rate = float(rate)
            except ValueError:
                sys.exit(f"--fault {spec!r}: expected OP:KIND:RATE")
            if kind not in KINDS or not 0.0 <= rate <= 1.0:
                sys.exit(f"--fault {spec!r}: KIND is one of {', '.join(KINDS)}, RATE 0..1")
            self.rules.append((op, kind, rate))
        self.rng = random.Random(seed)
        self.max_total = max_total
        self.max_per_request = max_per_request
        self.total = 0
        self.per_request = {}

    def choose(self, op, body):
        if self.total >= self.max_total:
            return None
        key = hashlib.sha256(op.encode() + b"\0" + body).hexdigest()
        if self.per_request.get(key, 0) >= self.max_per_request:
            return None
        for rule_op, kind, rate in self.rules:
            if rule_op in ("*", op) and self.rng.random() < rate:
                self.total += 1
                self.per_request[key] = self.per_request.get(key, 0) + 1
                return kind
        return None


class Log:
    def __init__(self, path):
        self.path = path

    def add(self, head, headers, body):
        if not self.path:
            return
        line = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body.decode("latin-1")
        entry = {
            "method": line[0],
            "path": line[1] if len(line) > 1 else "",
            "target": headers.get("x-amz-target", ""),
            "body": parsed,
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")


class Counts:
    def __init__(self, path):
        self.path = path
        self.data = {"requests": {}, "forwarded": {}, "faults": {}}

    def add(self, section, key):
        self.data[section][key] = self.data[section].get(key, 0) + 1

    def save(self):
        if not self.path:
            return
        tmp = f"{self.path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(self.data, f, sort_keys=True)
        os.replace(tmp, self.path)


async def read_request(reader):
    """(head bytes, headers dict, body) of the next request, or None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise ConnectionError("request head too large")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        if b":" in line:
            k, v = line.split(b":", 1)
            headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise ConnectionError("chunked request bodies are not supported")
    length = int(headers.get("content-length", "0") or 0)
    if length > MAX_BODY:
        raise ConnectionError("request body too large")
    body = await reader.readexactly(length) if length else b""
    return head, headers, body


async def read_response(reader):
    """One whole response (Content-Length or chunked), as bytes."""
    head = await reader.readuntil(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        if b":" in line:
            k, v = line.split(b":", 1)
            headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            out += size_line + chunk
            if size == 0:
                break
        return head + bytes(out)
    length = int(headers.get("content-length", "0") or 0)
    return head + (await reader.readexactly(length) if length else b"")


def canned(status, reason, error_type, message):
    body = json.dumps({"__type": error_type, "message": message}).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/x-amz-json-1.1\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"x-amzn-RequestId: byok-fault-{random.getrandbits(32):08x}\r\n"
        "\r\n"
    ).encode() + body


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen-port", type=int, default=0)
    ap.add_argument("--target-port", type=int, required=True)
    ap.add_argument("--delay-ms", type=float, default=60.0)
    ap.add_argument("--counts", default=None)
    ap.add_argument("--log", default=None)
    ap.add_argument("--fault", action="append", default=[])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-faults", type=int, default=1000)
    ap.add_argument("--max-faults-per-request", type=int, default=2)
    a = ap.parse_args()
    faults = Faults(a.fault, a.seed, a.max_faults, a.max_faults_per_request)
    counts = Counts(a.counts)
    log = Log(a.log)
    counts.save()
    delay = a.delay_ms / 1000.0

    async def handle(client_r, client_w):
        server_r = server_w = None
        try:
            while True:
                req = await read_request(client_r)
                if req is None:
                    return
                head, headers, body = req
                op = headers.get("x-amz-target", "").rsplit(".", 1)[-1] or "(none)"
                counts.add("requests", op)
                log.add(head, headers, body)
                kind = faults.choose(op, body)
                if kind:
                    counts.add("faults", f"{op}:{kind}")
                counts.save()
                if delay:
                    await asyncio.sleep(delay)
                if kind == "throttle":
                    client_w.write(canned(400, "Bad Request", "ThrottlingException", "Rate exceeded (injected)"))
                    await client_w.drain()
                    continue
                if kind in ("http500", "http503"):
                    status, reason, t = (
                        (500, "Internal Server Error", "InternalFailure")
                        if kind == "http500"
                        else (503, "Service Unavailable", "ServiceUnavailableException")
                    )
                    client_w.write(canned(status, reason, t, "injected"))
                    await client_w.drain()
                    continue
                if kind == "reset-before":
                    return
                if kind == "delay":
                    await asyncio.sleep(2.0)
                if server_w is None:
                    server_r, server_w = await asyncio.open_connection("127.0.0.1", a.target_port)
                server_w.write(head + body)
                await server_w.drain()
                response = await read_response(server_r)
                counts.add("forwarded", op)
                counts.save()
                if kind == "reset-after":
                    return
                client_w.write(response)
                await client_w.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            return
        finally:
            for w in (client_w, server_w):
                if w is not None:
                    w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", a.listen_port, limit=MAX_HEAD)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
