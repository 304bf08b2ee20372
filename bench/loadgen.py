"""A load generator for bench/suite.py where wrk is not installed: the same four scripts
as bench/wrk/*.lua, with the same arguments and the same output lines, in one process of
its own (asyncio, raw HTTP/1.1 keep-alive connections; no client library in the way).
Its ceiling is what the suite measures against GET /healthz and prints.

    python -m bench.loadgen -c 64 -d 8 URL SCRIPT.lua -- ARGS...
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

FORM = "application/x-www-form-urlencoded"


def split_lines(path: str) -> list[str]:
    return [line for line in Path(path).read_text().splitlines() if line]


def header_args(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, _, value = item.partition(":")
        out[name.strip()] = value.strip()
    return out


class Script:
    """What one of the wrk scripts does: the next request, and what a response means."""

    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        self.counted = 0
        self.out: Any = None
        self.stop = False
        if name == "refresh.lua":
            self.client_id = args[0]
            self.pool = split_lines(args[1])
            self.path = args[3] if len(args) > 3 else "/oauth/token"
        elif name == "once.lua":
            self.path, self.template = args[0], args[1]
            self.lines = split_lines(args[2])[::-1]
            self.expected = int(args[4])
            if len(args) > 5:
                self.out = open(args[5] + ".0", "w")
        elif name == "get.lua":
            self.paths = split_lines(args[0])
            self.headers = header_args(args[2:])
            self.i = 0
        elif name == "post.lua":
            self.path, self.template = args[0], args[1]
            self.lines = split_lines(args[2])
            self.headers = {"Content-Type": FORM, **header_args(args[4:])}
            self.i = 0
        else:
            raise SystemExit(f"unknown script {name}")

    def request(self) -> tuple[str, str, dict[str, str], str, Any] | None:
        """(method, path, headers, body, state) or None when this script is done."""
        if self.name == "refresh.lua":
            if not self.pool:
                raise SystemExit("token pool empty: give it more families than connections")
            token = self.pool.pop()
            body = f"grant_type=refresh_token&client_id={self.client_id}&refresh_token={token}"
            return "POST", self.path, {"Content-Type": FORM}, body, token
        if self.name == "once.lua":
            if not self.lines:
                self.stop = True
                return None
            words = [*self.lines.pop().split(), ""]
            body = self.template.replace("{1}", words[0]).replace("{2}", words[1])
            return "POST", self.path, {"Content-Type": FORM}, body, None
        if self.name == "get.lua":
            self.i = (self.i + 1) % len(self.paths)
            return "GET", self.paths[self.i], self.headers, "", None
        self.i = (self.i + 1) % len(self.lines)
        body = self.template.replace("{1}", self.lines[self.i])
        return "POST", self.path, self.headers, body, None

    def response(self, status: int, body: bytes, state: Any) -> None:
        if self.name == "refresh.lua" and status == 200:
            m = re.search(rb'"refresh_token":"([^"]+)"', body)
            if m:
                self.pool.append(m.group(1).decode())
        elif self.name == "once.lua" and status == self.expected:
            self.counted += 1
            if self.out:
                m = re.search(rb'"refresh_token":"([^"]+)"', body)
                if m:
                    self.out.write(m.group(1).decode() + "\n")


async def connection(
    host: str, port: int, script: Script, deadline: float, latencies: list[float], codes: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline and not script.stop:
            req = script.request()
            if req is None:
                return
            method, path, headers, body, state = req
            data = body.encode()
            head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            if method == "POST":
                head += f"Content-Length: {len(data)}\r\n"
            started = time.perf_counter()
            writer.write(head.encode() + b"\r\n" + data)
            raw = await reader.readuntil(b"\r\n\r\n")
            status = int(raw[9:12])
            m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", raw)
            length = int(m.group(1)) if m else 0
            payload = await reader.readexactly(length) if length else b""
            latencies.append(time.perf_counter() - started)
            codes.append(status)
            script.response(status, payload, state)
    finally:
        writer.close()


async def main(args: argparse.Namespace) -> None:
    url = urlsplit(args.url)
    script = Script(Path(args.script).name, args.rest)
    latencies: list[float] = []
    codes: list[int] = []
    started = time.perf_counter()
    deadline = started + args.d
    await asyncio.gather(
        *(
            connection(
                url.hostname or "127.0.0.1", url.port or 80, script, deadline, latencies, codes
            )
            for _ in range(args.c)
        )
    )
    elapsed = time.perf_counter() - started
    latencies.sort()
    bad = sum(1 for c in codes if not 200 <= c < 400)
    print(f"Requests/sec: {len(latencies) / elapsed:.2f}")
    if bad:
        print(f"Non-2xx or 3xx responses: {bad}")
    if script.name == "once.lua":
        print(f"counted {script.counted}\nduration_us {int(elapsed * 1e6)}")
    for p in (50, 90, 99):
        v = latencies[min(len(latencies) - 1, len(latencies) * p // 100)] if latencies else 0
        print(f"p{p}_ms {v * 1000:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-c", type=int, default=64)
    parser.add_argument("-d", type=float, default=8)
    parser.add_argument("url")
    parser.add_argument("script")
    parser.add_argument("rest", nargs="*")
    asyncio.run(main(parser.parse_args()))
