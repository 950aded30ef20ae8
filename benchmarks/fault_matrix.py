"""The fault matrix at a larger size: operation x fault, users involved, outcome.

Runs export, push, rollback and staged import on a tenant of --users users
(and --people rows to import) under each fault of tests/fault_matrix_cases.py
and all of them at once, then --kills kill -9 runs per operation under all
faults, and prints the table as Markdown. A figure, never a test.

    .venv/bin/python benchmarks/fault_matrix.py --users 300 --people 200
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fault_matrix_cases import FAULT_CASES, OPERATIONS, Matrix, table  # noqa: E402

from scimtools.mapping import load_lambdas  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory() as tmp, load_lambdas() as model:
        matrix = Matrix(Path(tmp), users=args.users, people=args.people).build(model)
        for operation in OPERATIONS:
            for fault in FAULT_CASES:
                results.append(matrix.run(operation, fault))
        for operation in ("push", "rollback", "import"):
            results.append(matrix.kill_runs(operation, args.kills))
    print(table(results))
    print(f"\n{time.monotonic() - started:.0f} s")
    bad = [r for r in results if r.outcome != "same as without faults"]
    figures = {
        "cells": len(results),
        "same": len(results) - len(bad),
        "faults": sum(r.faults for r in results),
        "kills": sum(r.kills for r in results),
        "users": args.users,
    }
    print("BENCH " + json.dumps({"benchmark": "fault_matrix", "figures": figures}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
