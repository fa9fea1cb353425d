"""Many fast probe targets in one process: `python -m bench.targets PORT...`.

Each port answers the monitor's readiness probe (`/health`) and canary query (`/books`) with
fixed bodies over keep-alive HTTP/1.1, so a benchmark measures the monitor, not the targets.
Prints `ready` once every port listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys

BOOK = {"id": "bench-book", "title": "Bench", "author": "Bench", "year": 2026}
CANARY = {"MONITOR_CANARY_QUERY": "bench", "MONITOR_CANARY_BOOK_ID": "bench-book"}


def _reply(body: dict[str, object]) -> bytes:
    data = json.dumps(body).encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(data)).encode() + b"\r\n\r\n" + data)


HEALTH = _reply({"status": "ok", "faults": {}})
BOOKS = _reply({"items": [BOOK], "total": 1})


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(BOOKS if head.startswith(b"GET /books") else HEALTH)
            await writer.drain()
    writer.close()


async def _main(ports: list[int]) -> None:
    servers = [await asyncio.start_server(_serve, "127.0.0.1", port) for port in ports]
    print("ready", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    asyncio.run(_main([int(p) for p in sys.argv[1:]]))
