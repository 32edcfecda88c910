"""A small HTTP/1.1 load generator for the write benchmark, run in its own process.

    python -m bench.loadgen < spec.json        # prints one JSON object: the figures

``spec``: ``{"port", "clients", "seconds", "requests_file"}`` where ``requests_file`` holds one
JSON array per line, ``[method, path, headers, body]`` (``body`` a JSON value or null). Each
of ``clients`` keep-alive connections to 127.0.0.1 takes the next request from the file and
waits for its answer before sending another (closed loop), until the file is used up or
``seconds`` have passed since the first request. Requests are encoded before the clock starts;
answers are parsed only as far as HTTP framing needs (status line, Content-Length or chunked),
so the client costs little of the machine it shares with the server.

Figures: requests answered, answers by status, requests per second (answered / wall time from
the first request sent to the last answer), latency percentiles of every answer, and the CPU
this process used meanwhile (share of one core).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import orjson

from bench.stats import percentiles


def encode(port: int, method: str, path: str, headers: dict, body) -> bytes:
    payload = b"" if body is None else orjson.dumps(body)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    fields = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
    if "content-length" in fields:
        body = await reader.readexactly(int(fields["content-length"]))
    elif fields.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body = b""
    return status, body, fields.get("connection", "").lower() != "close"


async def run(spec: dict) -> dict:
    port, clients, seconds = int(spec["port"]), int(spec["clients"]), float(spec["seconds"])
    with open(spec["requests_file"], "rb") as f:
        work = [encode(port, *orjson.loads(line)) for line in f if line.strip()]
    queue = iter(work)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]
    cpu = time.process_time()
    started = time.perf_counter()
    stop_at = started + seconds
    last = started

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal last
        for raw in queue:
            if time.perf_counter() >= stop_at:
                break
            sent = time.perf_counter()
            writer.write(raw)
            status, body, keep = await read_answer(reader)
            now = time.perf_counter()
            latencies.append(now - sent)
            last = max(last, now)
            statuses[status] = statuses.get(status, 0) + 1
            if status >= 300 and len(errors) < 5:
                errors.append(f"{status} {body[:300].decode('utf-8', 'replace')}")
            if not keep:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()

    await asyncio.gather(*(client(r, w) for r, w in connections))
    wall = last - started
    cpu = time.process_time() - cpu
    return {
        "clients": clients, "answered": len(latencies), "offered": len(work), "seconds": round(wall, 3),
        "statuses": {str(k): v for k, v in sorted(statuses.items())}, "errors": errors,
        "rps": round(len(latencies) / wall, 1) if wall > 0 else 0.0,
        **percentiles(latencies), "max_ms": round(max(latencies) * 1000, 2) if latencies else None,
        "client_cpu_share": round(cpu / wall, 3) if wall > 0 else None,  # of one core, while measuring
    }


def main() -> None:
    spec = json.load(sys.stdin)
    print(json.dumps(asyncio.run(run(spec))), flush=True)


if __name__ == "__main__":
    main()
