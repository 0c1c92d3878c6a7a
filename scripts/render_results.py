"""Copy the results matrices' tables into the README, so its Results section is exactly what the files say.

    python scripts/render_results.py            # rewrite the README's blocks from results/
    python scripts/render_results.py --check    # exit 1 if the README differs from results/ (tests run this)

A block sits between `<!-- begin <file> -->` and `<!-- end <file> -->` in README.md, <file> being a table under
results/ (results.md of Matrix 1, grid.md of Matrix 2); the manifest beside it gives the command and commits
printed under the table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BLOCK = re.compile(r"(<!-- begin (?P<file>\S+) -->\n)(?P<body>.*?)(<!-- end (?P=file) -->)", re.S)


def block_text(table: Path) -> str:
    """The table, then the command and commits from its manifest.json."""
    manifest = json.loads((table.parent / "manifest.json").read_text())
    return (
        table.read_text()
        + f"\nMade by `{manifest['command']}` on commit {', '.join(manifest['commits'])}.\n"
    )


def render(text: str) -> str:
    """`text` with every block's body replaced by its file's table; a block whose file is missing, a begin marker
    without its end, or no block at all is an error."""
    blocks = len(BLOCK.findall(text))
    if blocks == 0 or blocks != text.count("<!-- begin "):
        raise ValueError(f"README.md has {text.count('<!-- begin ')} begin markers and {blocks} complete blocks")

    def fill(match: re.Match[str]) -> str:
        table = REPO / match["file"]
        if not table.is_file():
            raise FileNotFoundError(f"README block {match['file']}: no such file; run the matrix that writes it")
        return match.group(1) + block_text(table) + match.group(4)

    return BLOCK.sub(fill, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the README is up to date")
    args = parser.parse_args()
    current = README.read_text()
    try:
        rendered = render(current)
    except (ValueError, FileNotFoundError) as err:
        print(f"render_results: {err}", file=sys.stderr)
        return 1
    if args.check:
        if rendered != current:
            print("README.md's results blocks differ from results/: run python scripts/render_results.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(rendered)
    print(f"README.md: {len(BLOCK.findall(current))} results blocks rendered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
