"""Score the audit against what the demo generator planted. Prints figures; not a test.

Builds a demo tenant (12,000 people by default) in a temporary folder, audits it
with the default lambdas and compares the findings of every kind with the ground
truth that the acceptance test derives from the generator and the replay
(`tests/test_audit.py`: `_truth`, `_found`, `_score`, shared so that the figure
and the test cannot drift apart). Users whose outcome depends on the order in
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

from scimtools.audit import FINDING_KINDS, audit_tenant, load_idp_views  # noqa: E402
from scimtools.demo import build_demo, generate_demo  # noqa: E402
from scimtools.mapping import generic_path  # noqa: E402
from scimtools.sandbox import Sandbox  # noqa: E402

# inactive_in_group is checked member by member in the acceptance test
# (every finding names an inactive member of that group); it has no list here.
SCORED = [k for k in FINDING_KINDS if k not in ("inactive_in_group",)]


def main() -> None:
    people = int(sys.argv[1]) if len(sys.argv) > 1 else 12_000
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "tenant.sqlite"
        build_demo(db, people=people)
        with Sandbox(db) as sandbox:
            tenant = sandbox.tenant
            users = [tenant.get("User", i) for i in acceptance._ids(tenant, "users")]
            groups = [tenant.get("Group", i) for i in acceptance._ids(tenant, "groups")]
        views = load_idp_views(db.parent / "idp-views")
        streams = []
        for file in sorted((db.parent / "streams").glob("*.jsonl")):
            streams += [json.loads(line) for line in file.read_text().splitlines()]
    started = time.perf_counter()
    audit = audit_tenant(users, groups, views=views)
    seconds = time.perf_counter() - started
    demo = {
        "audit": audit,
        "views": views,
        "users": {u["id"]: u for u in users},
        "groups": groups,
        "streams": streams,
        "generated": generate_demo(people=people),
    }
    planted = acceptance._truth(demo)
    person = {(v["idp"], v["key"]): v["person"] for v in views}

    scores: dict[str, dict[str, float | int | None]] = {}
    for kind in SCORED:
        if kind == "present_only_on_tenant":
            rows = audit.findings
            rows = rows[(rows["kind"] == kind) & rows["client"].notna()]
            found = {
                (person[(r["client"], r["client_key"])], generic_path(r["attribute"]))
                for r in rows.to_dict("records")
            }
            truth = planted["one_sided"] | planted["sent_by_the_other"]
            precision = acceptance._score(found, truth)[0]
            scores[kind] = {"precision": precision, "recall": None, "found": len(found)}
            continue
        found = acceptance._found(demo, kind)
        if kind == "changed_in_form":
            found = {
                (person[(c, k)], a)
                if (person[(c, k)], a) in planted[kind]
                else (c, k, a)
                for c, k, a in found
            }
        found -= planted["unsure"]
        precision, recall = acceptance._score(found, planted[kind])
        scores[kind] = {
            "precision": precision,
            "recall": recall,
            "planted": len(planted[kind]),
            "found": len(found),
        }

    for kind, score in scores.items():
        recall = "-" if score["recall"] is None else f"{score['recall']:.3f}"
        print(
            f"{kind:24} precision {score['precision']:.3f} recall {recall:>5}"
            f" (planted {score.get('planted', '-')}, found {score['found']})"
        )
    figures = {
        "people": people,
        "users": len(users),
        "findings": len(audit.findings),
        "audit_seconds": seconds,
        "kinds": scores,
        "unsure": len(planted["unsure"]),
    }
    print("BENCH " + json.dumps({"benchmark": "audit_truth", "figures": figures}))


if __name__ == "__main__":
    main()
