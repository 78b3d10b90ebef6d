"""Run the ASAM OpenDRIVE checker bundle (asam-qc-opendrive) on .xodr files; exit 1 on any issue.

    python -m venv /tmp/qc && /tmp/qc/bin/pip install asam-qc-opendrive==1.0.0
    python -m sim.maps export Town03 --out town03.xodr
    /tmp/qc/bin/python scripts/asam_qc.py town03.xodr

Its own interpreter, not the project's: asam-qc-opendrive 1.0.0 pins numpy < 2, which the
project's venv must not get. It imports nothing of laneloop. Prints, per file, the checkers
that ran and were skipped (rules newer than the file's declared version are skipped by the
bundle itself) and every issue counted by checker and level.
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys
import tempfile
from pathlib import Path


def check(path: Path) -> tuple[collections.Counter, collections.Counter]:
    """(checker statuses, issues by (checker, level)) of one file."""
    from qc_baselib import Configuration, Result
    from qc_opendrive import constants
    from qc_opendrive.main import run_checks

    config = Configuration()
    config.register_checker_bundle(checker_bundle_name=constants.BUNDLE_NAME)
    config.set_config_param(name="InputFile", value=str(path))
    with tempfile.TemporaryDirectory() as tmp:
        config.set_checker_bundle_param(
            checker_bundle_name=constants.BUNDLE_NAME, name="resultFile", value=str(Path(tmp) / "r.xqar")
        )
        result = Result()
        result.register_checker_bundle(
            name=constants.BUNDLE_NAME, description="", version=constants.BUNDLE_VERSION, summary=""
        )
        result.set_result_version(version=constants.BUNDLE_VERSION)
        run_checks(config, result)
    status: collections.Counter = collections.Counter()
    issues: collections.Counter = collections.Counter()
    for c in result.get_checker_results(constants.BUNDLE_NAME):
        status[getattr(c.status, "value", str(c.status))] += 1
        for i in c.issues:
            issues[(c.checker_id, getattr(i.level, "name", str(i.level)))] += 1
    return status, issues


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    args = ap.parse_args()
    try:
        import qc_opendrive  # noqa: F401
    except ImportError:
        print("error: asam-qc-opendrive is not installed here (run this in its own venv, see --help)", file=sys.stderr)
        return 1
    logging.disable(logging.INFO)
    bad = 0
    for f in args.files:
        if not f.is_file():
            print(f"error: {f} does not exist (give .xodr files)", file=sys.stderr)
            return 1
        status, issues = check(f)
        bad += sum(issues.values())
        found = ", ".join(f"{k[0]} {k[1]} x{n}" for k, n in sorted(issues.items())) or "no issues"
        print(f"{f}: checkers {dict(status)}; {found}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
