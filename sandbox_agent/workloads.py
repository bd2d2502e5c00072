"""Benchmark workloads, run by the frozen agent itself (``--workload``, hidden).

The benchmark harness (``bench sandbox``) needs the same code to run inside every
sandbox and as a bare process on the host, and the sealed image holds nothing but the
agent binary: so the binary carries these few loops. None reads the agent config, the
key file or the queues; none needs anything the sandbox does not already allow. Each
prints one JSON line with its own elapsed time, measured inside the sandbox, so the
harness can tell the work from the cost of launching it.

- ``noop``: start and exit (interpreter start-up only);
- ``cpu``: SHA-256 over a 4 KiB block plus a pure-Python integer loop, no syscalls;
- ``syscall``: ``stat`` and ``open``/``read``/``close`` of small files in the scratch
  directory (``$TMPDIR``, a tmpfs in the sandbox) and in the working directory
  (``/workspace``, a bind of a host directory), plus a ``stat`` of a missing path;
- ``io``: write 64 KiB, ``fsync``, read it back, in the working directory;
- ``idle``: sleep for ``--seconds``, for memory measurements.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["DEFAULT_ITERATIONS", "WORKLOADS", "main", "run_workload"]

WORKLOADS = ("noop", "cpu", "syscall", "io", "idle")
DEFAULT_ITERATIONS = {"noop": 0, "cpu": 20_000, "syscall": 20_000, "io": 200, "idle": 0}
IO_BLOCK = 64 * 1024


def _cpu(iterations: int) -> int:
    block = bytes(range(256)) * 16
    digest = b""
    x = 1
    for _ in range(iterations):
        digest = hashlib.sha256(digest + block).digest()
        for _ in range(50):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x ^ digest[0]


def _syscall(iterations: int, scratch: Path, work: Path) -> int:
    files = []
    for index, directory in enumerate((scratch, work)):
        path = directory / f"bench-syscall-{index}-{os.getpid()}"
        path.write_bytes(b"x" * 1024)
        files.append(str(path))
    missing = str(scratch / "bench-missing")
    total = 0
    try:
        for _ in range(iterations):
            for name in files:
                total += os.stat(name).st_size
                fd = os.open(name, os.O_RDONLY)
                total += len(os.read(fd, 1024))
                os.close(fd)
            try:
                os.stat(missing)
            except FileNotFoundError:
                total += 1
    finally:
        for name in files:
            os.unlink(name)
    return total


def _io(iterations: int, work: Path) -> int:
    path = work / f"bench-io-{os.getpid()}"
    block = os.urandom(IO_BLOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    total = 0
    try:
        for i in range(iterations):
            offset = (i % 16) * IO_BLOCK  # a 1 MiB file, rewritten in place
            os.pwrite(fd, block, offset)
            os.fsync(fd)
            total += len(os.pread(fd, IO_BLOCK, offset))
    finally:
        os.close(fd)
        os.unlink(path)
    return total


def run_workload(name: str, *, iterations: int | None = None, seconds: float = 0.0
                 ) -> dict[str, object]:
    """Run one workload in this process and return its report."""
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; one of {', '.join(WORKLOADS)}")
    count = DEFAULT_ITERATIONS[name] if iterations is None else iterations
    if count < 0 or seconds < 0:
        raise ValueError("iterations and seconds must not be negative")
    scratch = Path(tempfile.gettempdir())
    work = Path.cwd()
    start = time.perf_counter()
    if name == "cpu":
        _cpu(count)
    elif name == "syscall":
        _syscall(count, scratch, work)
    elif name == "io":
        _io(count, work)
    elif name == "idle":
        time.sleep(seconds)
    elapsed = time.perf_counter() - start
    return {"workload": name, "iterations": count, "elapsed_s": elapsed, "pid": os.getpid()}


def main(name: str, iterations: int | None, seconds: float) -> int:
    try:
        report = run_workload(name, iterations=iterations, seconds=seconds)
    except (OSError, ValueError) as exc:
        print(json.dumps({"workload": name, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover - the agent's --workload is the entry
    sys.exit(main(sys.argv[1], None, 0.0))
