"""Fork server for the kill -9 runs of tests/test_fault_matrix.py (not a test module).

It imports scimtools once, then for each JSON job read from stdin forks a child
that applies a plan (``"apply"``), rolls a run back (``"rollback"``) or resumes a
staged import (``"import"``), against a sandbox that injects faults; it prints
the child's pid, waits for it and prints its wait status. The test kills the
child with SIGKILL at a random moment. The server is single-threaded and never
starts V8, so forking it is safe.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

from scimtools.client import SCIMClient
from scimtools.imports import resume_import
from scimtools.journal import Journal
from scimtools.plan import read_plan
from scimtools.push import apply_plan, rollback_run


def _run(job: dict) -> None:
    client = SCIMClient(
        job["base_url"],
        token=job["token"],
        progress=False,
        backoff=0.01,
        max_backoff=0.05,
        max_retries=8,
    )
    with Journal(job["journal"]) as journal:
        if job["kind"] == "apply":
            apply_plan(
                client,
                read_plan(job["plan"]),
                journal,
                run_id=job["run_id"],
                concurrency=2,
                lookup_wait=0.01,
            )
        elif job["kind"] == "rollback":
            rollback_run(
                client,
                journal,
                job["run_id"],
                rollback_id=job["rollback_id"],
                concurrency=2,
                lookup_wait=0.01,
            )
        else:
            staged = resume_import(
                client,
                journal,
                job["import_id"],
                concurrency=2,
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
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(status, flush=True)


if __name__ == "__main__":
    main()
