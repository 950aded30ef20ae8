"""Fork server for the kill -9 test of tests/test_imports.py (not a test module).

It imports scimtools once, then for each JSON job read from stdin forks a child
that resumes a staged import from its journal and runs it to the end. Every line
it writes to stdout is tagged: ``pid P`` once the child is forked, ``write N``
from the child as it reaches its N-th write request (POST, PUT, PATCH or
DELETE), and ``status S``, the child's wait status.

A job with ``hold_at`` N and ``hold`` "before" or "after" makes the thread doing
the N-th write stop just before the request is sent or just after the server
answered (the answer not yet read by scimtools) until the test kills the child
with SIGKILL; the other threads go on meanwhile. So every kill lands inside the
import however loaded the machine is. The server is single-threaded and never
starts V8 (the journal holds the predictions the audit needs), so forking it is
safe.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback

import httpx

from scimtools.client import SCIMClient
from scimtools.imports import resume_import
from scimtools.journal import Journal

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HOLD_LIMIT = 30.0  # seconds; the test kills long before


def say(line: str) -> None:
    """Write one line to stdout in one write(2), whole even if killed."""
    os.write(sys.stdout.fileno(), f"{line}\n".encode())


class Reporting(httpx.BaseTransport):
    """Report each write request; hold the ``hold_at``-th one."""

    def __init__(self, hold_at: int | None, hold: str) -> None:
        self.inner = httpx.HTTPTransport()
        self.hold_at, self.hold = hold_at, hold
        self.writes = 0
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method not in WRITES:
            return self.inner.handle_request(request)
        with self.lock:
            self.writes += 1
            n = self.writes
        held = n == self.hold_at
        if held and self.hold == "before":
            say(f"write {n}")
            threading.Event().wait(HOLD_LIMIT)
        elif not held:
            say(f"write {n}")
        response = self.inner.handle_request(request)
        if held and self.hold == "after":
            response.read()
            say(f"write {n}")
            threading.Event().wait(HOLD_LIMIT)
        return response

    def close(self) -> None:
        self.inner.close()


def _run(job: dict) -> None:
    transport = Reporting(job.get("hold_at"), job.get("hold", "before"))
    client = SCIMClient(
        job["base_url"], token=job["token"], progress=False, transport=transport
    )
    with Journal(job["journal"]) as journal:
        staged = resume_import(
            client,
            journal,
            job["import_id"],
            concurrency=job["concurrency"],
            lookup_wait=0.01,
            progress=False,
        )
        staged.run()


def main() -> None:
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _run(job)
            except BaseException:
                traceback.print_exc()
                code = 1
            os._exit(code)
        say(f"pid {pid}")
        _, status = os.waitpid(pid, 0)
        say(f"status {status}")


if __name__ == "__main__":
    main()
