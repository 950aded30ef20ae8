"""Fork server for the kill -9 test of tests/test_imports.py (not a test module).

It imports scimtools once, then for each JSON job read from stdin forks a child
that resumes a staged import from its journal and runs it to the end, prints the
child's pid, waits for it and prints its wait status. The test kills the child
with SIGKILL at a random moment. The server is single-threaded and never starts
V8 (the journal holds the predictions the audit needs), so forking it is safe.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

from scimtools.client import SCIMClient
from scimtools.imports import resume_import
from scimtools.journal import Journal


def _run(job: dict) -> None:
    client = SCIMClient(job["base_url"], token=job["token"], progress=False)
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
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(status, flush=True)


if __name__ == "__main__":
    main()
