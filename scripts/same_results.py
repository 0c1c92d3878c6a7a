"""Whether two sets of run folders hold the same results: every rounds.jsonl record and summary.json value,
wall-clock figures and paths aside. For refactors that must not change behaviour:

    python scripts/same_results.py outputs/before outputs/after   # run folders of the same names under each

Exit 0 when every run folder found under the first path has an identical twin under the second.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: the one key whose value measures the machine, not the algorithm
WALL_CLOCK = "wall-time"


def _comparable(value: Any, roots: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _comparable(v, roots) for k, v in value.items() if k != WALL_CLOCK}
    if isinstance(value, list):
        return [_comparable(v, roots) for v in value]
    if isinstance(value, str):
        for root in roots:
            value = value.replace(root, "<root>")
    return value


def run_results(run_dir: Path, root: Path) -> dict[str, Any]:
    records = [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines() if line]
    summary = json.loads((run_dir / "summary.json").read_text())
    return _comparable({"rounds": records, "summary": summary}, (str(root.resolve()), str(root)))


def differences(first: dict[str, Any], second: dict[str, Any], path: str = "") -> list[str]:
    """Paths of the values that differ (at most a few per branch)."""
    if isinstance(first, dict) and isinstance(second, dict):
        return [d for k in sorted(set(first) | set(second)) for d in differences(first.get(k), second.get(k), f"{path}/{k}")]
    if isinstance(first, list) and isinstance(second, list) and len(first) == len(second):
        return [d for i, (a, b) in enumerate(zip(first, second)) for d in differences(a, b, f"{path}[{i}]")]
    return [] if first == second else [f"{path}: {_short(first)} != {_short(second)}"]


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--ignore", nargs="*", default=["runner", "supernodes"], help="summary keys to leave out")
    args = parser.parse_args(argv)
    runs = sorted(p.parent.relative_to(args.first) for p in args.first.rglob("summary.json"))
    if not runs:
        print(f"no run folder (with a summary.json) under {args.first}", file=sys.stderr)
        return 2
    failed = 0
    for run in runs:
        first, second = (run_results(root / run, root) for root in (args.first, args.second))
        for results in (first, second):
            for key in args.ignore:
                results["summary"].pop(key, None)
        found = differences(first, second)
        fields = len(set().union(*(r.keys() for r in first["rounds"]))) if first["rounds"] else 0
        print(f"{run}: {len(first['rounds'])} round records x {fields} fields + summary: "
              f"{'identical' if not found else 'DIFFERENT'}")
        for line in found[:5]:
            print(f"  {line}")
        failed += bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
