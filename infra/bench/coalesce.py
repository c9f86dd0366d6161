#!/usr/bin/env python3
"""Many concurrent requests for one URL, for the coalescing bench in proxy-bench.sh.

Opens one connection per token, and only once every connection is up sends all the requests
(`GET {path}?token={token}`) at once, so that they reach the proxy within a few milliseconds of
each other. Each body is compared with the expected file as it arrives. The last stdout line is
`RESULT clients=… ok=… full=… seconds=… x_cache=…` for the script: `ok` counts 200 answers,
`full` the 200 answers whose body equals the file, `x_cache` the `X-Cache` values seen.

Usage: coalesce.py --port PORT --path /live/42-x.ts --tokens FILE --expect FILE [--host 127.0.0.1]
"""

import argparse
import asyncio
import collections
import time

CHUNK = 64 * 1024


async def read_body(reader, headers, expected):
    """Reads the body (Content-Length, chunked or until close); returns whether it equals
    `expected`, comparing piece by piece so that no client holds a whole copy."""
    at = 0
    same = True

    def take(piece):
        nonlocal at, same
        if same and expected[at : at + len(piece)] != piece:
            same = False
        at += len(piece)

    if "chunked" in headers.get("transfer-encoding", ""):
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readline()
                break
            while size > 0:
                piece = await reader.read(min(size, CHUNK))
                if not piece:
                    return False
                take(piece)
                size -= len(piece)
            await reader.readexactly(2)
    elif "content-length" in headers:
        left = int(headers["content-length"])
        while left > 0:
            piece = await reader.read(min(left, CHUNK))
            if not piece:
                return False
            take(piece)
            left -= len(piece)
    else:
        while piece := await reader.read(CHUNK):
            take(piece)
    return same and at == len(expected)


async def one(reader, writer, expected, started):
    """Status, X-Cache value, whether the body was whole and seconds to the status line, for
    one sent request."""
    head_s = float("nan")
    try:
        status_line = await reader.readline()
        head_s = time.monotonic() - started
        parts = status_line.split()
        status = int(parts[1]) if len(parts) > 1 else 0
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        full = status == 200 and await read_body(reader, headers, expected)
        return status, headers.get("x-cache", "-"), full, head_s
    except (OSError, ValueError, asyncio.IncompleteReadError):
        return 0, "-", False, head_s
    finally:
        writer.close()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--expect", required=True)
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    with open(args.tokens) as f:
        tokens = [line.strip() for line in f if line.strip()]
    with open(args.expect, "rb") as f:
        expected = f.read()

    # Connect in bounded batches so the listen backlog never overflows.
    gate = asyncio.Semaphore(200)

    async def connect():
        async with gate:
            return await asyncio.open_connection(args.host, args.port, limit=CHUNK * 2)

    connections = await asyncio.gather(*(connect() for _ in tokens))
    started = time.monotonic()
    for (_, writer), token in zip(connections, tokens):
        writer.write(
            f"GET {args.path}?token={token} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
            f"Connection: close\r\n\r\n".encode()
        )
    # A request this small goes into the socket within write() itself.
    sent_s = time.monotonic() - started
    await asyncio.gather(*(w.drain() for _, w in connections))
    results = await asyncio.wait_for(
        asyncio.gather(*(one(r, w, expected, started) for r, w in connections)), args.timeout
    )
    seconds = time.monotonic() - started
    ok = sum(1 for status, _, _, _ in results if status == 200)
    full = sum(1 for _, _, whole, _ in results if whole)
    statuses = collections.Counter(status for status, _, _, _ in results)
    caches = collections.Counter(cache for _, cache, _, _ in results)
    heads = sorted(h for _, _, _, h in results if h == h) or [float("nan")]
    print("statuses:", dict(statuses))
    print(
        f"all requests sent after {sent_s * 1000:.1f} ms; status lines after "
        f"{heads[0]:.3f} s (first), {heads[len(heads) // 2]:.3f} s (median), {heads[-1]:.3f} s (last)"
    )
    x_cache = ",".join(f"{k}:{v}" for k, v in sorted(caches.items()))
    print(
        f"RESULT clients={len(tokens)} ok={ok} full={full} seconds={seconds:.2f} "
        f"sent_ms={sent_s * 1000:.1f} first_head_s={heads[0]:.3f} x_cache={x_cache}"
    )


if __name__ == "__main__":
    asyncio.run(main())
