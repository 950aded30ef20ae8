"""The fork server shared by the kill -9 workers of the tests (not a test module).

``serve(run)`` imports nothing itself: a worker imports scimtools once, then for
each JSON job read from stdin this forks a child that calls ``run(job)``. Every
line written to stdout is tagged: ``pid P`` once the child is forked, ``write N``
from the child as it reaches its N-th write request (POST, PUT, PATCH or DELETE),
and ``status S``, the child's wait status. `client_for` gives the child a
SCIMClient whose transport reports and may hold the ``hold_at``-th write "before"
it is sent or "after" the server answered, until the test kills the child.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
from collections.abc import Callable

import httpx

from scimtools.client import SCIMClient

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


def client_for(job: dict) -> SCIMClient:
    """Return the child's client, reporting (and maybe holding) its writes."""
    transport = Reporting(job.get("hold_at"), job.get("hold", "before"))
    return SCIMClient(
        job["base_url"], token=job["token"], progress=False, transport=transport
    )


def serve(run: Callable[[dict], None]) -> None:
    """Fork a child per JSON job on stdin that runs ``run(job)``; tag the output."""
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                run(job)
            except BaseException:
                traceback.print_exc()
                code = 1
            os._exit(code)
        say(f"pid {pid}")
        _, status = os.waitpid(pid, 0)
        say(f"status {status}")
