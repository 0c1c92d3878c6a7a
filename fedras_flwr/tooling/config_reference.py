"""The run-config's three written copies, generated from its one source (`fedras_flwr.config`: the
`RunConfig` settings and every codec's parameters): pyproject's `[tool.flwr.app.config]` (Flower only
accepts overrides of keys it declares), the `run` block of the Hydra `conf/config.yaml`, and the README's
configuration table. Each lives between two marker lines of its file.

    python -m fedras_flwr.tooling.config_reference --write   # after adding or changing a key
    python -m fedras_flwr.tooling.config_reference --check   # exit 1 if a copy is stale (a test runs it)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import tomli_w

from fedras_flwr.codecs import available_codecs, codec_class, parameter_keys
from fedras_flwr.config import CODEC_SECTION, SECTIONS, RunConfig, key_of

COMMAND = "python -m fedras_flwr.tooling.config_reference --write"
BEGIN = f"generated from fedras_flwr/config.py by `{COMMAND}`: do not edit by hand"
END = "end of the generated run-config"


Entry = tuple[str, Any, str]  # key, default, help


def sections() -> list[tuple[str, list[Entry]]]:
    """Every run-config key with its default and help, by section, in reference order."""
    grouped: dict[str, list[Entry]] = {}
    title = ""
    for spec in fields(RunConfig):
        if spec.name != "codec_parameters":
            title = SECTIONS.get(key_of(spec.name), title)
            grouped.setdefault(title, []).append((key_of(spec.name), spec.default, spec.metadata["help"]))
    for name in available_codecs():
        for key, spec in parameter_keys(codec_class(name)).items():
            grouped.setdefault(f"{CODEC_SECTION}: {name}", []).append((key, spec.default, spec.metadata["help"]))
    return list(grouped.items())


def _literal(value: Any) -> str:
    """A default as TOML, YAML and the README write it (JSON strings and booleans, Python numbers)."""
    return json.dumps(value) if isinstance(value, (str, bool)) else repr(value)


def pyproject_section() -> str:
    rows = []
    for title, entries in sections():
        rows.append((f"# {title}", ""))
        rows += [(tomli_w.dumps({key: default}).strip(), f"# {help_text}") for key, default, help_text in entries]
    width = max(len(left) for left, right in rows if right)
    return "".join(f"{left:<{width}}  {right}\n" if right else f"{left}\n" for left, right in rows)


def hydra_run_block() -> str:
    lines = ["run:"]
    for title, entries in sections():
        lines.append(f"  # {title}")
        lines += [f"  {key}: {_literal(default)}" for key, default, _ in entries]
    return "\n".join(lines) + "\n"


def markdown_table() -> str:
    lines = []
    for title, entries in sections():
        lines += [f"**{title}**", "", "| key | default | meaning |", "|---|---|---|"]
        lines += [f"| `{key}` | `{_literal(default)}` | {help_text.replace('|', '&#124;')} |" for key, default, help_text in entries]
        lines.append("")
    return "\n".join(lines)


def targets(root: Path) -> list[tuple[Path, str, str]]:
    """(file, comment prefix of its marker lines, generated text) of each copy."""
    return [
        (root / "pyproject.toml", "#", pyproject_section()),
        (root / "fedras_flwr" / "conf" / "config.yaml", "#", hydra_run_block()),
        (root / "README.md", "<!--", markdown_table()),
    ]


def _markers(prefix: str) -> tuple[str, str]:
    close = " -->" if prefix == "<!--" else ""
    return f"{prefix} {BEGIN}{close}\n", f"{prefix} {END}{close}\n"


def regenerated(text: str, prefix: str, body: str, name: str) -> str:
    """`text` with the part between its two marker lines replaced by `body`."""
    begin, end = _markers(prefix)
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"{name} must hold the marker lines {begin.strip()!r} and {end.strip()!r} once each, in that order")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return head + begin + body + end + tail


def stale_files(root: Path) -> list[Path]:
    return [path for path, prefix, body in targets(root) if regenerated(path.read_text(), prefix, body, path.name) != path.read_text()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the stale copies")
    parser.add_argument("--check", action="store_true", help="exit 1 when a copy is stale")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2], help="the checkout")
    args = parser.parse_args(argv)
    stale = stale_files(args.root)
    if args.write:
        for path, prefix, body in targets(args.root):
            path.write_text(regenerated(path.read_text(), prefix, body, path.name))
        print(f"rewrote {', '.join(str(p) for p in stale) or 'nothing (all current)'}")
        return 0
    if stale:
        print(f"stale run-config copies: {', '.join(str(p) for p in stale)}; run `{COMMAND}`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
