#!/usr/bin/env python3
"""A loopback TCP relay that delays every chunk sent towards the server by a
fixed time: a stand-in for the round trip to a distant KMS Region, used by
scripts/bench-batch.sh in front of LocalStack.

    latency-proxy.py --listen-port 0 --target-port 4566 --delay-ms 60
prints the port it listens on, then relays until killed."""

import argparse
import asyncio
import sys


async def pipe(reader, writer, delay):
    try:
        while data := await reader.read(65536):
            if delay:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen-port", type=int, default=0)
    ap.add_argument("--target-port", type=int, required=True)
    ap.add_argument("--delay-ms", type=float, default=60.0)
    a = ap.parse_args()

    async def handle(client_r, client_w):
        server_r, server_w = await asyncio.open_connection("127.0.0.1", a.target_port)
        await asyncio.gather(
            pipe(client_r, server_w, a.delay_ms / 1000.0),
            pipe(server_r, client_w, 0),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", a.listen_port)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
