"""Score the audit against what the demo generator planted. Prints figures; not a test.

Builds a demo tenant (12,000 people by default) in a temporary folder, audits it
with the default lambdas and compares the findings of every kind with the ground
truth that the acceptance test derives from the generator and the replay
(`tests/test_audit.py`: `audited_demo` and `score_kinds`, shared so that the
figure and the test cannot drift apart; inactive_in_group is checked there member
by member). Users whose outcome depends on the order in
which two IdPs wrote them are left out of the kinds that depend on it (counted
as ``unsure``). The last line is ``BENCH {json}`` for benchmarks/run_all.py.

Run: .venv/bin/python benchmarks/audit_truth.py [PEOPLE]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import test_audit as acceptance  # noqa: E402


def main() -> None:
    people = int(sys.argv[1]) if len(sys.argv) > 1 else 12_000
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        demo = acceptance.audited_demo(Path(tmp) / "tenant.sqlite", people)
        seconds = time.perf_counter() - started
    audit = demo["audit"]
    scores, unsure = acceptance.score_kinds(demo)

    for kind, score in scores.items():
        recall = "-" if score["recall"] is None else f"{score['recall']:.3f}"
        print(
            f"{kind:24} precision {score['precision']:.3f} recall {recall:>5}"
            f" (planted {score['planted'] or '-'}, found {score['found']})"
        )
    figures = {
        "people": people,
        "users": len(demo["users"]),
        "findings": len(audit.findings),
        "build_and_audit_seconds": seconds,
        "kinds": scores,
        "unsure": unsure,
    }
    print("BENCH " + json.dumps({"benchmark": "audit_truth", "figures": figures}))


if __name__ == "__main__":
    main()
