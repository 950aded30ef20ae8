"""The ``scimtools`` command: ``scimtools sandbox ...`` and ``scimtools demo ...``."""

from __future__ import annotations

import argparse
import signal
import sqlite3
import sys
import threading
from collections.abc import Sequence

__all__ = ["main"]


def run_sandbox(args: argparse.Namespace) -> int:
    """Serve the sandbox until Ctrl-C, printing its URLs and client ids."""
    from scimtools.sandbox import Sandbox, SandboxConfig

    problem = _sandbox_problem(args)
    if problem:
        print(f"scimtools sandbox: {problem}", file=sys.stderr)
        return 2
    faults = None
    if args.faults:
        from scimtools.sandbox.faults import FaultPlan

        try:
            faults = FaultPlan.parse(args.faults)
        except ValueError as exc:
            print(f"scimtools sandbox: --faults: {exc}.", file=sys.stderr)
            return 2
    config = SandboxConfig(latency=args.latency_ms / 1000, faults=faults)
    try:
        sb = Sandbox(args.db, seed_dir=args.seed, port=args.port, config=config)
    except (OSError, ValueError, sqlite3.DatabaseError) as exc:
        print(f"scimtools sandbox: {exc}", file=sys.stderr)
        return 2
    try:
        sb.start()
    except OSError as exc:
        sb.stop()
        print(
            f"scimtools sandbox: --port {args.port}: {exc.strerror}.", file=sys.stderr
        )
        return 2

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        print(f"SCIM base URL:  {sb.base_url}")
        print(f"Token endpoint: {sb.token_url}")
        print(f"SCIM server entity: {sb.server_entity_id}")
        for client in sb.clients.values():
            line = f"client {client.name}: {client.client_id}"
            if args.show_secrets:
                line += f" secret {client.client_secret}"
            print(line)
        print("Press Ctrl-C to stop.", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        sb.stop()
    return 0


def _sandbox_problem(args: argparse.Namespace) -> str | None:
    """Return what is wrong with the sandbox verb's options, in one line, or None."""
    from pathlib import Path

    if not 0 <= args.port <= 65535:
        return (
            f"--port {args.port} is not a TCP port; pass 0 to 65535 (0 picks a"
            " free one)."
        )
    if args.latency_ms < 0:
        return f"--latency-ms {args.latency_ms:g} is negative; pass 0 or more."
    db = Path(args.db)
    if db.is_dir():
        return f"--db {args.db} is a folder; pass the path of a SQLite file."
    if not db.resolve().parent.is_dir():
        return (
            f"--db {args.db}: the folder {db.resolve().parent} does not exist;"
            " create it first (mkdir -p) or choose another path."
        )
    if args.seed is not None:
        seed = Path(args.seed)
        if not seed.is_dir():
            return (
                f"--seed {args.seed} is not a folder; pass the folder holding"
                " tenant.json (data/demo by default)."
            )
        if not (seed / "tenant.json").is_file():
            return (
                f"--seed {args.seed} holds no tenant.json; pass the folder holding"
                " tenant.json (data/demo by default)."
            )
    return None


def run_lab(args: argparse.Namespace) -> int:
    """Run JupyterLab on notebooks/ with a sandbox serving a copy of the demo tenant.

    The sandbox runs in this process on 127.0.0.1; JupyterLab gets its URL and the
    ``migrator`` client's credentials through the environment (never a file), so
    ``scimtools.connect()`` in a notebook talks to it over HTTP like a real tenant.
    Writes land in the copy (``--db``), not in the demo tenant.
    """
    import os
    import shutil
    import sqlite3
    import subprocess
    from pathlib import Path

    from scimtools.config import demo_db_path
    from scimtools.sandbox import Sandbox

    demo = demo_db_path()
    if not demo.exists():
        print(f"{demo} does not exist; run `make demo` (or scimtools demo build).")
        return 2
    db = Path(args.db)
    if args.fresh or not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(demo) as src, sqlite3.connect(db) as dst:
            src.backup(dst)

    with Sandbox(db, port=args.port) as sb:
        migrator = sb.clients["migrator"]
        env = dict(
            os.environ,
            FUSIONAUTH_URL=sb.url,
            SCIM_CLIENT_ID=migrator.client_id,
            SCIM_CLIENT_SECRET=migrator.client_secret,
            SCIM_SERVER_ENTITY_ID=sb.server_entity_id,
        )
        print(f"Sandbox on {sb.base_url} serving {db} (a copy of the demo tenant)")
        jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent))
        command = [jupyter or "jupyter", "lab", *args.jupyter_args]
        try:
            return subprocess.call(command, env=env, cwd=args.notebooks)
        except KeyboardInterrupt:
            return 0


def run_demo(argv: Sequence[str]) -> int:
    """Hand the arguments to ``scimtools.demo.build:main``."""
    from scimtools.demo.build import main as demo_main

    return int(demo_main(list(argv)) or 0)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``scimtools`` command."""
    parser = argparse.ArgumentParser(prog="scimtools")
    commands = parser.add_subparsers(dest="command", required=True)

    sandbox = commands.add_parser(
        "sandbox", help="serve a FusionAuth-compatible SCIM server on 127.0.0.1"
    )
    sandbox.add_argument("--db", required=True, help="SQLite file of the tenant")
    sandbox.add_argument("--seed", help="directory holding tenant.json")
    sandbox.add_argument("--port", type=int, default=0, help="0 picks a free port")
    sandbox.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay added per SCIM request"
    )
    sandbox.add_argument(
        "--faults",
        metavar="SPEC",
        help="inject faults, e.g. 429=0.1,503=0.05,seed=7 (see"
        " scimtools.sandbox.faults)",
    )
    sandbox.add_argument(
        "--show-secrets", action="store_true", help="also print client secrets"
    )

    lab = commands.add_parser(
        "lab", help="JupyterLab on notebooks/ with the sandbox running"
    )
    lab.add_argument("--db", default="out/lab/tenant.sqlite", help="the lab's copy")
    lab.add_argument("--port", type=int, default=0, help="0 picks a free port")
    lab.add_argument("--notebooks", default="notebooks", help="folder to open")
    lab.add_argument("--fresh", action="store_true", help="copy the demo tenant again")
    lab.add_argument("jupyter_args", nargs="*", help="passed to jupyter lab")

    demo = commands.add_parser("demo", help="build the demo tenant", add_help=False)
    demo.add_argument("demo_args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``scimtools`` command line.

    Examples
    --------
    >>> build_parser().parse_args(["sandbox", "--db", "t.sqlite"]).port
    0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        return run_demo(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "lab":
        return run_lab(args)
    return run_sandbox(args)


if __name__ == "__main__":
    sys.exit(main())
