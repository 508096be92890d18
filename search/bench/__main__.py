"""``python -m search.bench <name> [args] [--smoke-test] [--output PATH]`` (see the package)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import search.bench
from search.bench.common import BENCHMARKS_MD, Benchmark, missing_rows, read_section, update_section
from search.bench.registry import BENCHMARKS


def build_parser() -> argparse.ArgumentParser:
    """The parser: one sub-command per benchmark of the registry."""
    parser = argparse.ArgumentParser(
        prog="python -m search.bench",
        description=search.bench.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="bench", required=True)
    for bench in BENCHMARKS.values():
        p = sub.add_parser(bench.name, help=bench.help.replace("%", "%%"))
        bench.add_arguments(p)
        p.add_argument("--no-write", action="store_true", help="print only; write no section")
        p.add_argument(
            "--output",
            type=Path,
            default=None,
            help="the Markdown file whose section is rewritten (default: BENCHMARKS.md; with "
            "--smoke-test a temporary file)",
        )
        p.add_argument(
            "--smoke-test",
            action="store_true",
            help="run on a tiny budget in seconds and check the section written",
        )
    return parser


def smoke_test(bench: Benchmark, args: argparse.Namespace, output: Path | None = None) -> Path:
    """Run ``bench`` on a smoke test's budget; the file its section was written to.

    Raises:
        ValueError: The benchmark has no smoke test.
        RuntimeError: The section written lacks table rows it should have.
    """
    if bench.smoke is None:
        raise ValueError(f"The benchmark {bench.name!r} has no smoke test; give it one.")
    if output is None:
        output = Path(tempfile.mkdtemp(prefix="bench-smoke-")) / "BENCHMARKS.md"
    if output.resolve() == BENCHMARKS_MD.resolve():
        raise ValueError(f"A smoke test never rewrites {BENCHMARKS_MD}; pass another --output.")
    # timed passes do not wait for quiet moments: a smoke test's run never hangs on the load
    os.environ.setdefault("FRONTIER_QUIET_MAX_WAIT_S", "0")
    with tempfile.TemporaryDirectory(prefix=f"bench-{bench.name}-") as tmp:
        tiny = bench.smoke(args, Path(tmp) / "studies")
        body = bench.run(tiny)
        expected = bench.rows(tiny)
    print(body)
    update_section(bench.name, body, output)
    section = read_section(bench.name, output) or ""
    missing = missing_rows(section, expected)
    if missing:
        raise RuntimeError(
            f"The smoke test of {bench.name!r} wrote a section without the rows {missing} "
            f"(in {output})."
        )
    print(f"smoke test of {bench.name!r} passed; section written to {output}", flush=True)
    return output


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bench = BENCHMARKS[args.bench]
    if args.smoke_test:
        smoke_test(bench, args, args.output)
        return 0
    body = bench.run(args)
    print(body)
    if not args.no_write:
        update_section(bench.name, body, args.output or BENCHMARKS_MD)
    return 0


if __name__ == "__main__":
    sys.exit(main())
