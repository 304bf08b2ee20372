"""Where the refresh path's time goes: a summary of py-spy's collapsed stacks
(`py-spy record --format raw`, as `python -m bench.suite --profile` writes them to
bench/profile-refresh.txt).

    python -m bench.profile bench/profile-refresh.txt [--top 25]

Prints the share of samples in which each function is on the stack (inclusive), the
functions that were running themselves (self), and a few coarse buckets: idle in the
event loop, signing, PostgreSQL I/O and driver, HTTP parsing, logging, the framework.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

BUCKETS = {
    "asyncio (event loop)": ("asyncio/",),
    "RS256 signing (pyjwt/cryptography)": ("jwt/", "cryptography/"),
    "psycopg (driver, pool)": ("psycopg/", "psycopg_pool/"),
    # app/server.py: the server's own protocol and response transport (under uvicorn)
    "HTTP (uvicorn/h11/httptools)": ("uvicorn/", "h11/", "httptools", "(app/server.py)"),
    "logging (structlog/logging)": ("structlog/", "logging/", "(app/logging.py)"),
    "Litestar": ("litestar/",),
    "ledger (deciders, events)": ("ledger/",),
    "projections (read models)": ("projections/",),
    "app/usecases": ("app/usecases/",),
    "app/http": ("app/http/",),
    "msgspec": ("msgspec",),
}

FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def bucket_of(names: list[str]) -> str:
    """The bucket of the innermost frame that is in one: where the sample's time went."""
    for name in reversed(names):
        for bucket, needles in BUCKETS.items():
            if any(n in name for n in needles):
                return bucket
    return "other"


def frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rstrip().rpartition(" ")
    names = []
    for raw in stack.split(";")[1:]:  # the first is the thread
        m = FRAME.match(raw.strip())
        names.append(f"{m['fn']} ({m['file']})" if m else raw.strip())
    return names, int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    total = 0
    for line in args.profile.read_text().splitlines():
        if not line.strip():
            continue
        names, count = frames(line)
        total += count
        for name in set(names):
            inclusive[name] += count
        if names:
            own[names[-1]] += count
        buckets[bucket_of(names)] += count
    print(f"{total} samples\n\nbuckets (each sample in that of its innermost frame in one):")
    for bucket, n in buckets.most_common():
        print(f"  {100 * n / total:5.1f} %  {bucket}")
    print("\ninclusive:")
    for name, n in inclusive.most_common(args.top):
        print(f"  {100 * n / total:5.1f} %  {name}")
    print("\nself:")
    for name, n in own.most_common(args.top):
        print(f"  {100 * n / total:5.1f} %  {name}")


if __name__ == "__main__":
    main()
