"""The Flower app folder that `flwr run` bundles into a FAB, for an editable and a regular install alike.

From a source checkout (`pip install -e .`, or running inside the checkout) it is the checkout itself: its
pyproject.toml declares the app and the FAB carries the package's code. A regular install (`pip install .`)
has no pyproject.toml, so a folder holding only a generated one is used instead: the same components,
publisher and run-config defaults (`fedras_flwr.config.flat_defaults()`), and the installed distribution's
name, version and dependencies. That FAB carries no code: Flower puts the FAB's folder in front of
`sys.path` and imports `fedras_flwr.flower.*` from there or, as nothing is there, from the installed package
(runtime dependency installation is off, tooling/flwr_cli.py FLOWER_ENV). Every SuperExec that runs the app
therefore needs this package installed, as the Docker image does.

    flwr run "$(python -m fedras_flwr.tooling.app_dir)" --run-config "num-server-rounds=5"
"""

from __future__ import annotations

import argparse
import os
import tomllib
from importlib.metadata import metadata, requires
from pathlib import Path
from typing import Any

import tomli_w

from fedras_flwr.config import flat_defaults

DISTRIBUTION = "fedras-flwr"
PUBLISHER = "fedras"
COMPONENTS = {"serverapp": "fedras_flwr.flower.server_app:app", "clientapp": "fedras_flwr.flower.client_app:app"}
#: The source checkout when the package runs from one; else site-packages itself, with no pyproject.toml.
CHECKOUT = Path(__file__).resolve().parents[2]
GENERATED = "fedras-flwr-app"  # folder name of a generated app (a valid Flower app name)


def declares_this_app(folder: Path) -> bool:
    """Whether `folder/pyproject.toml` declares this project's Flower app (true of the source checkout)."""
    try:
        config = tomllib.loads((folder / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return False
    app = config.get("tool", {}).get("flwr", {}).get("app", {})
    return config.get("project", {}).get("name") == DISTRIBUTION and app.get("components") == COMPONENTS


def app_pyproject() -> dict[str, Any]:
    """The pyproject.toml of a generated app, from the installed distribution's metadata."""
    meta = metadata(DISTRIBUTION)
    project = {
        "name": DISTRIBUTION,
        "version": meta["Version"],
        "description": meta.get("Summary") or "",
        "license": meta.get("License-Expression") or meta.get("License"),
        "dependencies": [r for r in requires(DISTRIBUTION) or [] if "extra ==" not in r],  # not the dev extra
    }
    return {
        "project": {key: value for key, value in project.items() if value is not None},
        "tool": {"flwr": {"app": {"publisher": PUBLISHER, "components": COMPONENTS, "config": flat_defaults()}}},
    }


def write_app(folder: Path) -> Path:
    """Write a generated app (only its pyproject.toml) into `folder` and return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(tomli_w.dumps(app_pyproject()))
    return folder


def app_dir(generated: Path) -> Path:
    """The source checkout when it declares this app, else a generated app written to `generated`."""
    return CHECKOUT if declares_this_app(CHECKOUT) else write_app(generated)


def main(argv: list[str] | None = None) -> None:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fedras_flwr"
    parser = argparse.ArgumentParser(description="Print the Flower app folder to pass to `flwr run`.")
    parser.add_argument("dest", nargs="?", type=Path, default=cache / GENERATED,
                        help="where to write the generated app when there is no source checkout (default: %(default)s)")
    print(app_dir(parser.parse_args(argv).dest.resolve()))


if __name__ == "__main__":
    main()
