"""Fork server for the kill -9 test of tests/test_push.py (not a test module).

It imports scimtools once, then for each JSON job read from stdin forks a child
that applies a plan, prints the child's pid, waits for it and prints its wait
status. The test kills the child with SIGKILL at a random moment. The server
itself is single-threaded, so forking it is safe.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

from scimtools.client import SCIMClient
from scimtools.journal import Journal
from scimtools.plan import read_plan
from scimtools.push import apply_plan


def _apply(job: dict) -> None:
    client = SCIMClient(job["base_url"], token=job["token"], progress=False)
    with Journal(job["journal"]) as journal:
        apply_plan(
            client,
            read_plan(job["plan"]),
            journal,
            run_id=job["run_id"],
            concurrency=job["concurrency"],
            lookup_wait=0.01,
        )


def main() -> None:
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _apply(job)
            except BaseException:
                traceback.print_exc()
                code = 1
            os._exit(code)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(status, flush=True)


if __name__ == "__main__":
    main()
