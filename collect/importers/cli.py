"""The one importer command line: ``python -m collect.importers {cityscapes,culane,tusimple} ROOT --out DIR``.

Every source gets the same ROOT and output options and the same conventions (one-line errors
with exit 1, usage errors exit 2, Ctrl-C / SIGTERM exit 130 with nothing written, one summary
line on success); its adapter (`collect.importers.source.Source`) adds only its own options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from collect.importers.convert import ImportResult
from collect.importers.registry import SOURCES
from collect.importers.source import Source, SourceError
from dataset.format import DatasetError
from plumbing import run_cli, size_type
from sim.tags import ROAD_LINE

PROG = "python -m collect.importers"
EPILOG_TAIL = "Then check it with: python -m dataset.validate DIR (docs/real_datasets.md)"


def _add_common(p: argparse.ArgumentParser) -> None:
    """ROOT and the output options every source has."""
    p.add_argument("root", metavar="ROOT", type=Path, help="the dataset's folder, as unpacked from its archives")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="dataset folder to write")
    p.add_argument("--size", type=size_type(16), metavar="HxW", help="resize every frame, e.g. 160x320 (default: keep)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    p.add_argument("--workers", type=int, default=2, help="conversion threads (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="tracebacks on errors")


def build_parser() -> argparse.ArgumentParser:
    """The parser: one subcommand per registered source."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Import a real dataset into a laneloop dataset folder (docs/real_datasets.md).",
        epilog="examples:\n" + "\n".join(f"  {s.examples[0]}" for s in SOURCES.values()) + f"\n{EPILOG_TAIL}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="source", required=True, metavar="DATASET", help=", ".join(SOURCES))
    for source in SOURCES.values():
        s = sub.add_parser(
            source.name,
            help=source.description,
            description=source.description,
            epilog="examples:\n" + "\n".join(f"  {e}" for e in source.examples) + f"\n{EPILOG_TAIL}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_common(s)
        source.add_arguments(s)
    return p


def run_source(source: Source, args: argparse.Namespace) -> ImportResult:
    """Call the source's import function with its own options and the shared ones."""
    return source.function(
        args.root,
        args.out,
        **source.options(args),
        size=args.size,
        overwrite=args.overwrite,
        workers=args.workers,
        progress=not args.no_progress,
    )


def run_import_cli(args: argparse.Namespace, do_import: Callable[[], ImportResult]) -> int:
    """Run an import with the CLI conventions: one-line errors (exit 1), Ctrl-C (exit 130)."""
    results: list[ImportResult] = []

    def body() -> int:
        results.append(do_import())  # SIGTERM and Ctrl-C unwind: the staged folder goes
        return 0

    code = run_cli(
        body,
        expected=(SourceError, DatasetError, OSError),
        debug=args.debug,
        interrupted=f"interrupted: nothing was written to {args.out}",
    )
    if code:
        return code
    print(summary(results[0]))
    return 0


def summary(result: ImportResult) -> str:
    """The one line an import ends with: frames, episodes, size, split, where, time, lane share."""
    m = result.manifest
    lanes = ""
    if ROAD_LINE in (m.annotated_tags or []):
        share = sum(r["lane_pixels"] for r in result.rows) / max(1, len(result.rows) * m.width * m.height)
        lanes = f"; lane pixels {100 * share:.2f}%"
    return (
        f"imported {len(result.rows)} frames in {len(m.episodes)} episodes ({m.width}x{m.height}, split "
        f"{m.episodes[0].split}) into {result.out} in {result.seconds:.1f} s{lanes}"
    )


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 1 error, 2 usage, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    source = SOURCES[args.source]
    return run_import_cli(args, lambda: run_source(source, args))


def forward(name: str) -> Callable[[list[str] | None], int]:
    """`main` of an old per-dataset command (`python -m collect.import_<name> ...`): the same as
    ``python -m collect.importers <name> ...``."""

    def main_for(argv: list[str] | None = None) -> int:
        return main([name, *(sys.argv[1:] if argv is None else argv)])

    return main_for


__all__ = ["build_parser", "forward", "main", "run_import_cli", "run_source", "summary"]
