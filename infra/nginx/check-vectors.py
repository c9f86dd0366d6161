#!/usr/bin/env python3
"""Checks the nginx-lua gate against the play-token v1 vectors.

Starts the gate (nginx.conf in this directory) on loopback once per key set and leeway found in
the vectors, with its origin pointing at a closed port: a request the gate lets through is
answered 502 by nginx, a refused one 403. Vectors whose verdict depends on their fixed `now`
(the `expired` ones) are replaced by freshly minted tokens that expire around the real clock.

Usage: infra/nginx/check-vectors.py [vectors.json, default core/tests/data/play-token-v1.vectors.json]
"""

import base64
import hmac
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_VECTORS = HERE.parents[1] / "core/tests/data/play-token-v1.vectors.json"


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def mint(key, room, exp):
    message = f"{room}|{exp}"
    sig = hmac.new(key.encode(), message.encode(), "sha256").hexdigest()
    return base64.urlsafe_b64encode(f"{message}|{sig}".encode()).rstrip(b"=").decode()


def standard_alphabet_token(key, exp):
    """A padded standard-alphabet token, as PHP's base64_encode writes it. (The payload's
    characters never yield `+` or `/`, so padding is the only difference from base64url.)"""
    message = f"420|{exp}"  # 79 bytes: the encoding ends in `=`
    sig = hmac.new(key.encode(), message.encode(), "sha256").hexdigest()
    return base64.b64encode(f"{message}|{sig}".encode()).decode()


def status(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


class Gate:
    def __init__(self, keys, leeway):
        self.dir = tempfile.TemporaryDirectory(prefix="livegate-nginx-check-")
        prefix = pathlib.Path(self.dir.name)
        for sub in ("logs", "tmp"):
            (prefix / sub).mkdir()
        self.port, closed = free_ports(2)
        conf = (HERE / "nginx.conf").read_text()
        for name, value in {
            "@PREFIX@": str(prefix),
            "@LUA_DIR@": str(HERE / "lua"),
            "@LISTEN@": f"127.0.0.1:{self.port}",
            "@ORIGIN@": f"127.0.0.1:{closed}",
            "@WORKERS@": "1",
        }.items():
            conf = conf.replace(name, value)
        (prefix / "nginx.conf").write_text(conf)
        env = dict(os.environ, LIVEGATE_TOKEN_KEYS=",".join(keys), LIVEGATE_TOKEN_LEEWAY_S=str(leeway))
        self.proc = subprocess.Popen(
            ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "logs/error.log")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("nginx-lua gate did not start:\n" + (prefix / "logs/error.log").read_text())

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        self.dir.cleanup()


def main():
    path = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_VECTORS
    vectors = json.loads(path.read_text())["vectors"]
    groups = {}
    for v in vectors:
        groups.setdefault((tuple(v["keys"]), v["leeway_s"]), []).append(v)

    failures = 0
    checked = 0

    def check(gate, name, request_path, accept):
        nonlocal failures, checked
        got = status(gate.port, request_path)
        ok = got == (502 if accept else 403)
        checked += 1
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {'accept' if accept else 'reject'} -> {got}")

    for (keys, leeway), members in groups.items():
        gate = Gate(keys, leeway)
        try:
            for v in members:
                if v.get("reason") == "expired":
                    continue  # depends on the vector's clock; covered by minted tokens below
                token = urllib.request.quote(v["token"], safe="")
                for ext in ("flv", "m3u8"):
                    check(gate, f"{v['name']} (.{ext})", f"/live/{v['path_room_id']}.{ext}?token={token}",
                          v["expect"] == "accept")
                check(gate, f"{v['name']} (segment)", f"/live/{v['path_room_id']}-7.ts?a=1&token={token}",
                      v["expect"] == "accept")
            now = int(time.time())
            key = keys[0]
            check(gate, "minted, expires in an hour", f"/live/42.flv?token={mint(key, 42, now + 3600)}", True)
            check(gate, f"minted, expired {leeway + 2} s ago", f"/live/42.flv?token={mint(key, 42, now - leeway - 2)}", False)
            if leeway > 2:
                check(gate, "minted, expired within leeway", f"/live/42.flv?token={mint(key, 42, now - leeway + 2)}", True)
            std = standard_alphabet_token(key, now + 3600)
            check(gate, "standard alphabet, padded, sent raw", f"/live/420.m3u8?token={std}", True)
            check(gate, "standard alphabet, percent-encoded",
                  f"/live/420.m3u8?token={urllib.request.quote(std, safe='')}", True)
            check(gate, "standard alphabet, padding dropped", f"/live/420.m3u8?token={std.rstrip('=')}", True)
            check(gate, "no token", "/live/42.flv", False)
            check(gate, "room id with a leading zero in the path", f"/live/042.flv?token={mint(key, 42, now + 60)}", False)
            check(gate, "token for another room", f"/live/43-1.ts?token={mint(key, 42, now + 60)}", False)
        finally:
            gate.stop()
    print(f"{checked - failures}/{checked} checks passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
