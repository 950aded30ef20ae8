"""Run every benchmark and write the README's table of figures (``make bench``).

Each benchmark runs as a subprocess and prints, last, one line ``BENCH {json}``:
``{"benchmark": name, "figures": {...}}``. This driver reads those lines, bounds
each stage in time and memory (a stage past its limit is killed and recorded as
"over N s" or "over N GiB" rather than left to hang), and writes the table, with
the machine it ran on, into README.md between ``<!-- bench:start -->`` and
``<!-- bench:end -->``. The table is never typed by hand.

Run: ``.venv/bin/python benchmarks/run_all.py [--only NAME ...] [--no-readme]``;
``--json PATH`` also saves the raw figures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
PY = sys.executable
GIB = 2**30


@dataclass
class Stage:
    """One benchmark run: a command and its limits."""

    name: str
    argv: list[str]
    timeout_s: float
    figures: dict[str, Any] = field(default_factory=dict)
    outcome: str = "not run"  # "ok", "over N s", "over N GiB", "failed (rc N)"
    seconds: float = 0.0
    peak_rss_gib: float = 0.0


def stages(tmp: Path) -> list[Stage]:
    """Return the stages of one ``make bench`` run, in order."""
    bench = ROOT / "benchmarks"
    scimtools = Path(PY).with_name("scimtools")
    return [
        Stage("sandbox_list", [PY, str(bench / "sandbox_list.py")], 300),
        Stage("export", [PY, str(bench / "export.py")], 900),
        Stage("frames", [PY, str(bench / "frames.py")], 600),
        Stage("audit_100k", [PY, str(bench / "audit.py"), "100000"], 600),
        Stage("audit_1m", [PY, str(bench / "audit.py"), "1000000"], 720),
        Stage("audit_truth", [PY, str(bench / "audit_truth.py")], 600),
        Stage(
            "conflicts_100k",
            [PY, str(bench / "conflicts.py"), "--users", "100000", "--view", "60000"],
            300,
        ),
        Stage("conflicts_1m", [PY, str(bench / "conflicts.py")], 420),
        Stage("push", [PY, str(bench / "push.py")], 300),
        Stage("import", [PY, str(bench / "import.py")], 300),
        Stage("fault_matrix", [PY, str(bench / "fault_matrix.py")], 900),
        Stage(
            "demo_build",
            [str(scimtools), "demo", "build", "--db", str(tmp / "demo.sqlite")],
            600,
        ),
    ]


def _tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of ``proc`` and its children (0 once it has gone)."""
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_stage(stage: Stage, memory_limit: int) -> None:
    """Run ``stage``, echoing its output; fill in its figures and outcome."""
    print(f"== {stage.name}: {' '.join(Path(a).name for a in stage.argv)}", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    child = subprocess.Popen(
        stage.argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line)
            print(f"   {line}", end="", flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    proc = psutil.Process(child.pid)
    peak = 0
    killed = ""
    while child.poll() is None:
        peak = max(peak, _tree_rss(proc))
        elapsed = time.perf_counter() - started
        if elapsed > stage.timeout_s:
            killed = f"over {stage.timeout_s:.0f} s"
        elif peak > memory_limit:
            killed = f"over {memory_limit / GIB:.0f} GiB"
        if killed:
            os.killpg(child.pid, 9)
            child.wait()
            break
        time.sleep(0.25)
    reader.join(timeout=10)
    stage.seconds = time.perf_counter() - started
    stage.peak_rss_gib = peak / GIB
    for line in lines:
        if line.startswith("BENCH "):
            stage.figures = json.loads(line[len("BENCH ") :])["figures"]
    if killed:
        stage.outcome = killed
    elif child.returncode != 0:
        stage.outcome = f"failed (rc {child.returncode})"
    elif stage.name == "demo_build":
        stage.outcome = "ok"
        stage.figures = {"seconds": stage.seconds}
    else:
        stage.outcome = "ok" if stage.figures else "failed (no BENCH line)"
    print(f"   -> {stage.outcome} in {stage.seconds:.0f} s", flush=True)


def machine(load_start: tuple[float, ...], load_end: tuple[float, ...]) -> str:
    """Return one line describing the machine and its load."""
    cpu = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        if found:
            cpu = found.group(1).strip()
    except OSError:
        pass
    memory = psutil.virtual_memory().total / GIB
    os_name = f"{platform.system()} {platform.release()}"
    try:
        release = platform.freedesktop_os_release()
        os_name = f"{release.get('PRETTY_NAME', os_name)}, kernel {platform.release()}"
    except OSError:
        pass

    def load(values: tuple[float, ...]) -> str:
        return " / ".join(f"{v:.1f}" for v in values)

    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.1f} GiB memory; Python"
        f" {platform.python_version()}; {os_name};"
        f" {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}. Load average"
        f" (1/5/15 min) {load(load_start)} at the start and {load(load_end)} at the"
        " end: other processes shared the cores, so absolute figures are"
        " pessimistic; ratios are measured side by side in the same run."
    )


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _time_mem(stage: Stage) -> str:
    if stage.outcome != "ok":
        return stage.outcome
    f = stage.figures
    return (
        f"{_n(f['seconds'], 1)} s wall ({_n(f['cpu_s'], 1)} s CPU in-process),"
        f" peak RSS {f['peak_rss_gib']:.2f} GiB"
    )


def table(by: dict[str, Stage]) -> list[str]:
    """Return the Markdown rows of the figures."""
    rows = [
        "| what | scimtools | compared with | ratio | script |",
        "|---|---|---|---|---|",
    ]

    def row(what: str, ours: str, theirs: str, ratio: str, script: str) -> None:
        rows.append(f"| {what} | {ours} | {theirs} | {ratio} | `{script}` |")

    def failed(stage: Stage, what: str, script: str) -> bool:
        if stage.outcome == "ok":
            return False
        row(what, stage.outcome, "", "", script)
        return True

    s = by.get("sandbox_list")
    if s and not failed(s, "sandbox list, HTTP, one thread", "sandbox_list.py"):
        f = s.figures
        row(
            f"sandbox list throughput, HTTP, one thread, count=100,"
            f" {_n(f['second_pass_users'])} users",
            f"{_n(f['second_pass_users_per_s'])} users/s",
            "",
            "",
            "benchmarks/sandbox_list.py",
        )

    s = by.get("export")
    if s and not failed(s, "export", "benchmarks/export.py"):
        f, inside, past = s.figures, s.figures["inside"], s.figures["past"]
        what = (
            f"export of {_n(inside['users'])} users, {f['latency_ms']:.0f} ms per"
            f" request (scimtools: {f['workers']} concurrent pages)"
        )
        ours = f"{_n(inside['scimtools_users_per_s'])} users/s"
        for label, key in (
            ("naive sequential httpx pager", "naive_users_per_s"),
            ("scim2-client 0.13.2, one page at a time", "scim2_client_users_per_s"),
        ):
            ratio = inside["scimtools_users_per_s"] / inside[key]
            row(
                what,
                ours,
                f"{label}: {_n(inside[key])} users/s",
                f"{ratio:.1f}",
                "benchmarks/export.py",
            )
            what = "same"
        row(
            f"complete export of {_n(past['users'])} users past the 10,000 window,"
            f" {f['latency_ms']:.0f} ms per request",
            f"{_n(past['scimtools_s'], 1)} s ({_n(past['scimtools_users_per_s'])}"
            f" users/s), {past['requests']} requests (minimum"
            f" {past['minimum_requests']}), {past['partitions']} partitions",
            "",
            "",
            "benchmarks/export.py",
        )

    s = by.get("frames")
    if s and not failed(s, "flatten users", "benchmarks/frames.py"):
        f = s.figures
        row(
            f"flatten {_n(f['users'])} users to a wide frame and {_n(f['emails'])}"
            f" emails (best of {f['repeat']})",
            f"`users_frame` + `emails_frame`: {f['scimtools_s']:.2f} s",
            f"`pandas.json_normalize` (users, then emails): "
            f"{f['json_normalize_s']:.2f} s",
            f"{f['ratio']:.2f}",
            "benchmarks/frames.py",
        )

    for key, label in (("audit_100k", "100,000"), ("audit_1m", "1,000,000")):
        s = by.get(key)
        if s and s.outcome == "ok" and s.figures.get("workers"):
            f = s.figures
            ours = (
                f"{_n(f['seconds'], 1)} s wall ({_n(f['cpu_s'], 1)} s CPU in-process"
                f" + {_n(f['children_cpu_s'], 1)} s in {f['workers']} worker"
                f" processes), peak RSS {f['sampled_total_peak_gib']:.2f} GiB"
                " (process and workers, sampled)"
            )
            row(
                f"audit of {label} users (`audit_tenant`, default lambdas)",
                ours,
                "",
                "",
                "benchmarks/audit.py",
            )
        elif s:
            row(
                f"audit of {label} users (`audit_tenant`, default lambdas)",
                _time_mem(s),
                "",
                "",
                "benchmarks/audit.py",
            )
    s = by.get("audit_truth")
    if s and not failed(s, "audit against the planted truth", "audit_truth.py"):
        f = s.figures
        kinds = f["kinds"]
        recalls = {k: v["recall"] for k, v in kinds.items() if v["recall"] is not None}
        worst_p = min(kinds, key=lambda k: (kinds[k]["precision"], k))
        worst_r = min(recalls, key=lambda k: (recalls[k], k))
        perfect = sum(
            1
            for v in kinds.values()
            if v["precision"] == 1 and v["recall"] in (1, None)
        )
        row(
            f"audit of the {_n(f['people'])}-person demo against what the generator"
            f" planted, {len(kinds)} kinds",
            f"{perfect} kinds at precision and recall 1.000; lowest precision"
            f" {kinds[worst_p]['precision']:.3f} ({worst_p}), lowest recall"
            f" {recalls[worst_r]:.3f} ({worst_r}); {f['unsure']} order-dependent"
            " values left out",
            "",
            "",
            "benchmarks/audit_truth.py",
        )
    for key, label in (("conflicts_100k", "100,000"), ("conflicts_1m", "1,000,000")):
        s = by.get(key)
        if s:
            if s.outcome == "ok":
                label = _n(s.figures["users"])
                views = f"two client views of {_n(s.figures['view'])}"
            else:
                views = "two client views"
            row(
                f"`attribute_tenant` + `find_conflicts`, {label} tenant users, {views}",
                _time_mem(s),
                "",
                "",
                "benchmarks/conflicts.py",
            )

    for key, unit, what in (
        ("push", "ops", "push (`apply_plan`, read + PATCH per op)"),
        ("import", "users", "staged import (`run_stage`, one stage)"),
    ):
        s = by.get(key)
        script = f"benchmarks/{key}.py"
        if not s or failed(s, what, script):
            continue
        f = s.figures
        per_s = "ops_per_s" if key == "push" else "users_per_s"
        base = f[f"c1_{per_s}"]
        for c in (1, 8):
            row(
                f"{what}, {f['latency_ms']:.0f} ms per request, concurrency {c}",
                f"{_n(f[f'c{c}_{per_s}'], 1)} {unit}/s",
                "" if c == 1 else "concurrency 1",
                "" if c == 1 else f"{f[f'c{c}_{per_s}'] / base:.1f}",
                script,
            )

    s = by.get("fault_matrix")
    script = "benchmarks/fault_matrix.py"
    what = "fault matrix: export, push, rollback, import x each fault and all at once"
    if s and not failed(s, what, script):
        f = s.figures
        row(
            f"{what}, plus kill -9 and resume ({f['users']} users)",
            f"{f['same']} of {f['cells']} cells end as without faults"
            f" ({f['faults']} faults injected, {f['kills']} kills)",
            "",
            "",
            script,
        )

    s = by.get("demo_build")
    if s:
        row(
            "demo tenant build (12,000 people), `scimtools demo build`",
            f"{s.seconds:.0f} s" if s.outcome == "ok" else s.outcome,
            "",
            "",
            "benchmarks/run_all.py",
        )
    return rows


def write_readme(block: str) -> None:
    """Replace the text between the bench markers in README.md with ``block``."""
    text = README.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md lacks {START} and {END}: add them first")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{block}\n{END}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="stage names to run")
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--json", type=Path, help="also save the figures here")
    parser.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="NAME=SECONDS",
        help="change one stage's time limit (repeatable)",
    )
    parser.add_argument(
        "--memory-limit-gib",
        type=float,
        default=0.8 * psutil.virtual_memory().available / GIB,
        help="kill a stage whose processes hold more (default: 80%% of available)",
    )
    args = parser.parse_args()

    load_start = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        todo = [s for s in stages(Path(tmp)) if not args.only or s.name in args.only]
        limits = dict(item.split("=", 1) for item in args.limit)
        for stage in todo:
            stage.timeout_s = float(limits.get(stage.name, stage.timeout_s))
        for stage in todo:
            run_stage(stage, int(args.memory_limit_gib * GIB))
    total = time.perf_counter() - started
    by = {s.name: s for s in todo}
    block = "\n".join(
        [
            f"Machine: {machine(load_start, os.getloadavg())}",
            "",
            *table(by),
            "",
            f"`make bench` took {total / 60:.0f} min; a stage is killed past its"
            f" time limit or past {args.memory_limit_gib:.0f} GiB and shows"
            ' "over ...". Peak RSS is the whole benchmark process, synthetic'
            " input included.",
        ]
    )
    print(block)
    if args.json:
        args.json.write_text(
            json.dumps({s.name: {**s.__dict__} for s in todo}, indent=2, default=str)
        )
    if not args.no_readme:
        write_readme(block)
        print(f"wrote the table into {README.relative_to(ROOT)}")
    return (
        0 if all(s.outcome == "ok" or s.outcome.startswith("over") for s in todo) else 1
    )


if __name__ == "__main__":
    sys.exit(main())
