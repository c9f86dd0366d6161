#!/usr/bin/env python3
"""A closed-loop HTTP/1.1 load client for large responses, printing wrk's summary lines.

wrk reads every body through 8 KiB reads and copies it into user space; on a two-core machine
that costs it 300-650 us of CPU per 1 MiB response, as much as the server under test spends,
so wrk rather than the server bounds requests/s. This client keeps N keep-alive connections
busy with GET requests like wrk does, but drops each body inside the kernel (recv with
MSG_TRUNC discards TCP data without copying it), so that what it costs per request is a few
system calls. Latency is measured from sending a request to the last byte of its body.

Usage: discard-client.py -c CONNECTIONS -d SECONDS [--processes N] URL
Prints, as wrk --latency does:  50%/90%/99% latency, "N requests in Xs", "Requests/sec: R"
and "Non-2xx or 3xx responses: E" when there were any.
"""

import argparse
import multiprocessing
import selectors
import socket
import time
import urllib.parse

HEADER_READ = 4096
HEADER_LIMIT = 64 * 1024
DISCARD_CHUNK = 4 * 1024 * 1024


class Connection:
    def __init__(self, address, request):
        self.address = address
        self.request = request
        self.sock = None
        self.head = b""
        self.body_left = None
        self.sent_at = 0.0
        self.status = 0

    def open(self):
        self.sock = socket.create_connection(self.address)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)

    def send(self):
        self.head = b""
        self.body_left = None
        self.sent_at = time.perf_counter()
        self.sock.sendall(self.request)

    def readable(self, scratch):
        """Reads what is there; returns True when the response is complete."""
        if self.body_left is None:
            try:
                data = self.sock.recv(HEADER_READ)
            except BlockingIOError:
                return False
            if not data:
                raise ConnectionError("closed by the server")
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > HEADER_LIMIT:
                    raise ConnectionError("response head too long")
                return False
            lines = self.head[:end].split(b"\r\n")
            self.status = int(lines[0].split(b" ", 2)[1])
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            self.body_left = length - (len(self.head) - end - 4)
            self.head = b""
        while self.body_left > 0:
            try:
                dropped = self.sock.recv_into(
                    scratch, min(self.body_left, DISCARD_CHUNK), socket.MSG_TRUNC
                )
            except BlockingIOError:
                return False
            if dropped == 0:
                raise ConnectionError("closed by the server mid-body")
            self.body_left -= dropped
        return True


def run(url, connections, seconds, queue):
    parsed = urllib.parse.urlsplit(url)
    address = (parsed.hostname, parsed.port or 80)
    target = parsed.path + ("?" + parsed.query if parsed.query else "")
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {parsed.netloc}\r\nUser-Agent: discard-client\r\n\r\n"
    ).encode()
    # MSG_TRUNC leaves the buffer untouched; recv_into only needs one of the right size.
    scratch = memoryview(bytearray(DISCARD_CHUNK))
    selector = selectors.DefaultSelector()
    conns = [Connection(address, request) for _ in range(connections)]
    latencies = []
    errors = 0
    non_2xx = 0
    start = time.perf_counter()
    deadline = start + seconds
    for conn in conns:
        conn.open()
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        conn.send()
    while selector.get_map():
        now = time.perf_counter()
        if now >= deadline:
            break
        for key, _ in selector.select(timeout=deadline - now):
            conn = key.data
            try:
                done = conn.readable(scratch)
            except (ConnectionError, OSError, ValueError, IndexError):
                errors += 1
                selector.unregister(conn.sock)
                conn.sock.close()
                conn.open()
                selector.register(conn.sock, selectors.EVENT_READ, conn)
                conn.send()
                continue
            if done:
                latencies.append(time.perf_counter() - conn.sent_at)
                if not 200 <= conn.status < 400:
                    non_2xx += 1
                if time.perf_counter() < deadline:
                    conn.send()
    elapsed = time.perf_counter() - start
    for conn in conns:
        conn.sock.close()
    queue.put((latencies, errors, non_2xx, elapsed))


def percentile(sorted_values, fraction):
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-c", "--connections", type=int, default=50)
    parser.add_argument("-d", "--duration", type=float, default=6.0, help="seconds")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("url")
    args = parser.parse_args()
    processes = max(1, min(args.processes, args.connections))
    queue = multiprocessing.Queue()
    share = [args.connections // processes] * processes
    for i in range(args.connections % processes):
        share[i] += 1
    workers = [
        multiprocessing.Process(target=run, args=(args.url, n, args.duration, queue))
        for n in share
    ]
    for worker in workers:
        worker.start()
    results = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    latencies = sorted(l for result in results for l in result[0])
    errors = sum(result[1] for result in results)
    non_2xx = sum(result[2] for result in results)
    elapsed = max(result[3] for result in results)
    print("  Latency Distribution")
    for label, fraction in (("50%", 0.50), ("90%", 0.90), ("99%", 0.99)):
        print(f"     {label} {percentile(latencies, fraction) * 1000:.3f}ms")
    print(f"  {len(latencies)} requests in {elapsed:.2f}s")
    if non_2xx:
        print(f"  Non-2xx or 3xx responses: {non_2xx}")
    if errors:
        print(f"  Socket errors: connect 0, read {errors}, write 0, timeout 0")
    print(f"Requests/sec: {len(latencies) / elapsed if elapsed else 0:.2f}")


if __name__ == "__main__":
    main()
