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

import sys
from pathlib import Path

from scimtools.imports import resume_import
from scimtools.journal import Journal

# Run as a script: the shared fork server sits beside this file.
sys.path.insert(0, str(Path(__file__).parent))
from kill_worker import client_for, serve  # noqa: E402


def _run(job: dict) -> None:
    with Journal(job["journal"]) as journal:
        staged = resume_import(
            client_for(job),
            journal,
            job["import_id"],
            concurrency=job["concurrency"],
            lookup_wait=0.01,
            progress=False,
        )
        staged.run()


if __name__ == "__main__":
    serve(_run)
