"""docker-compose.yml proven in containers: build the image, bring up the SuperLink and 3 SuperNodes (TLS, SuperNode
authentication), run 2 FedRAS rounds from this machine, check `finished:completed` and the results files, show that
a SuperNode container with an unregistered key is refused, and remove every container, network and volume it made,
also on failure or Ctrl-C. Docker (with its compose plugin) or podman (with `pip install podman-compose`).

    python scripts/compose_smoke.py          # the last line is the verdict; exit status 0 only when PASSED

Base image: --base-image (or $BASE_IMAGE) if given; else python:3.11-slim when the engine has it or can pull it;
else, where no registry is reachable, a Debian bookworm image made here from Debian packages by mmdebstrap, tagged
by a hash of its recipe (so it is built once and then reused), with the Python packages from a wheelhouse that this
machine builds (`pip wheel`) and the image installs with no index (Dockerfile OFFLINE=1).

Everything goes under --work-dir (default: a new temp folder): the compose file, throwaway credentials,
outputs/ (the run's results, written by the ServerApp's container), logs/ (build, every service, the intruder).
podman on hosts whose cgroups or limits it cannot set (.ci/containers.conf has the settings): export
CONTAINERS_CONF=<that file> first.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compose_gen import IMAGE, render  # noqa: E402

from fedras_flwr.tooling.credentials import ensure_auth_keys, ensure_ca, ensure_server_cert, make_credentials  # noqa: E402
from fedras_flwr.tooling.deploy import (  # noqa: E402
    CA_CERT,
    CA_DIR,
    COMPOSE_CREDENTIALS,
    COMPOSE_NODE_PORT,
    COMPOSE_PORT,
    PROFILES,
    SUPERLINK,
    Node,
    components,
    compose_layout,
    online_nodes,
    supernode_command,
    topology,
    write_connection,
)
from fedras_flwr.tooling.deploy_local import run_config, run_deployed  # noqa: E402
from fedras_flwr.tooling.flower_run import RunFailed, free_ports, raise_interrupt  # noqa: E402
from fedras_flwr.tooling.flwr_cli import FLOWER_ENV  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WHEELHOUSE = REPO / "wheelhouse"
NODES = 3
RUN = [  # small enough for 2 rounds in a minute; mixed devices so every node's profile is used
    "num-server-rounds=2", "synthetic-users=60", "synthetic-items=200", "synthetic-mean-interactions=20",
    "clients-per-round=9", "eval-every=2", "codec=fedras", "hetero=mixed", "out-dir=/app/outputs/smoke",
]
PUBLIC_BASE = re.search(r"^ARG BASE_IMAGE=(\S+)", (REPO / "Dockerfile").read_text(), re.M).group(1)  # its default
# A base image from Debian packages: bookworm's Python (3.11) runs the wheels this machine builds for its 3.11.
DEBIAN_SUITE, DEBIAN_PYTHON = "bookworm", (3, 11)
DEBIAN_PACKAGES = ("python3", "python3-venv", "passwd", "ca-certificates")
DEBIAN_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")
INTRUDER = "intruder"
REFUSED = "Failed to activate SuperNode"  # what a SuperNode logs when the SuperLink does not know its key
# Log lines that show TLS, SuperNode authentication and the refused intruder: (container's service, text in the line).
EVIDENCE = (
    (SUPERLINK, "Uvicorn running on https://"),
    ("supernode-1", "Uvicorn running on https://"),
    ("register", "authorised"),
    (SUPERLINK, "[Fleet.ActivateNode] Activated node_id"),
    (SUPERLINK, "No SuperNode found with the given public key"),
    (INTRUDER, REFUSED),
)


class SmokeFailed(RuntimeError):
    """A step failed; the message says which and what to do."""


@dataclasses.dataclass(frozen=True)
class Engine:
    """A container engine's CLI and the compose front end that drives it."""

    cli: str  # docker | podman
    compose: tuple[str, ...]
    # podman 4.3 cannot start a container whose dependency (podman-compose's `--requires` for depends_on) has one
    # of its own: "generating dependency graph ... not found in input list". Such an engine gets the services
    # up in two steps, the SuperLink side and then, once the keys are registered, the nodes.
    staged_up: bool = False
    separator: str = "-"  # of a service's container name, <project><sep><service><sep>1: "_" with podman-compose

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([self.cli, *args], capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise SmokeFailed(f"`{self.cli} {' '.join(args[:3])} ...` failed: {_tail(done.stderr or done.stdout)}")
        return done

    def has_image(self, name: str) -> bool:
        return self("image", "inspect", name, check=False).returncode == 0

    def version(self) -> str:
        return self("version", "--format", "{{.Client.Version}}", check=False).stdout.strip() or "?"


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def _excerpt(line: str, text: str, width: int = 160) -> str:
    """`line` without colour codes, cut to about `width` characters around `text`."""
    line = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
    if len(line) <= width:
        return line
    start = line.index(text)
    return f"{line[:width // 3]} ... {line[start:start + width - width // 3]}"


def _ok(*argv: str) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def detect_engine() -> Engine:
    """Docker when its engine answers and it has compose; else podman with podman-compose."""
    if shutil.which("docker") and _ok("docker", "info") and _ok("docker", "compose", "version"):
        return Engine("docker", ("docker", "compose"))
    if shutil.which("podman"):
        compose = shutil.which("podman-compose") or shutil.which("podman-compose", path=str(Path(sys.executable).parent))
        if compose is None:
            raise SmokeFailed("podman is here but podman-compose is not: pip install podman-compose")
        # --in-pod=false: every service its own network identity, as with Docker (in one pod the SuperNodes' ports clash)
        return Engine("podman", (compose, "--in-pod=false"), staged_up=True, separator="_")
    raise SmokeFailed(
        "no container engine: install Docker with its compose plugin, or podman and runc "
        "(apt-get install podman runc) and `pip install podman-compose`"
    )


def debian_recipe(mirror: str) -> dict[str, Any]:
    """Everything that decides the Debian base image; its hash is the image's tag."""
    return {
        "suite": DEBIAN_SUITE, "variant": "minbase", "packages": DEBIAN_PACKAGES, "excludes": DEBIAN_EXCLUDES, "mirror": mirror,
    }


def debian_base_tag(recipe: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    return f"localhost/fedras-base:{recipe['suite']}-{digest}"


def build_debian_base(engine: Engine, recipe: dict[str, Any], log_file: Path) -> str:
    """The Debian base image of `recipe` (mmdebstrap | engine import), built only when no image has its tag."""
    tag = debian_base_tag(recipe)
    if engine.has_image(tag):
        print(f"base image {tag}: already built (same recipe)")
        return tag
    if shutil.which("mmdebstrap") is None:
        raise SmokeFailed(
            f"no registry gives {PUBLIC_BASE} and there is no mmdebstrap: apt-get install mmdebstrap, or pass --base-image"
        )
    command = [
        "mmdebstrap", f"--variant={recipe['variant']}", f"--include={','.join(recipe['packages'])}",
        *[f"--dpkgopt=path-exclude={pattern}" for pattern in recipe["excludes"]],
        recipe["suite"], "-", recipe["mirror"],
    ]
    started = time.monotonic()
    with log_file.open("w") as log:
        debootstrap = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log)
        imported = subprocess.run(
            [engine.cli, "import", "--change", 'CMD ["/bin/bash"]', "-", tag], stdin=debootstrap.stdout, stdout=log, stderr=log,
            timeout=1800,
        )
        debootstrap.stdout.close()
        if debootstrap.wait(timeout=60) != 0 or imported.returncode != 0:
            raise SmokeFailed(f"building the Debian base image failed; see {log_file}")
    print(f"base image {tag}: built from Debian {recipe['suite']} packages in {time.monotonic() - started:.0f} s")
    return tag


def check_wheelhouse_python() -> None:
    """The wheels this Python builds must install on the Debian base's Python."""
    if sys.version_info[:2] != DEBIAN_PYTHON:
        here, there = ".".join(map(str, sys.version_info[:2])), ".".join(map(str, DEBIAN_PYTHON))
        raise SmokeFailed(
            f"the wheelhouse is built for this Python {here}, the Debian {DEBIAN_SUITE} base has {there}: "
            f"run this script from a Python {there} environment, or pass --base-image"
        )


def build_wheelhouse(log_file: Path) -> None:
    """Wheels of the project's dependencies (and of hatchling, its build backend) into wheelhouse/."""
    started = time.monotonic()
    with log_file.open("w") as log:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-w", str(WHEELHOUSE), str(REPO), "hatchling"],
            stdout=log, stderr=log, timeout=1800,
        )
    if done.returncode != 0:
        raise SmokeFailed(f"pip wheel failed; see {log_file}")
    for own in WHEELHOUSE.glob("fedras_flwr-*.whl"):  # the image builds the project from its source
        own.unlink()
    print(f"wheelhouse: {len(list(WHEELHOUSE.glob('*.whl')))} wheels in {time.monotonic() - started:.0f} s")


def build_image(engine: Engine, base: str | None, mirror: str, logs: Path) -> str:
    """Build IMAGE; returns the base image it was built on."""
    offline = False
    if base is None:
        if engine.has_image(PUBLIC_BASE) or engine("pull", PUBLIC_BASE, check=False, timeout=600).returncode == 0:
            base = PUBLIC_BASE
        else:
            print(f"no registry gives {PUBLIC_BASE}: building the base image from Debian packages")
            check_wheelhouse_python()
            base, offline = build_debian_base(engine, debian_recipe(mirror), logs / "base-image.log"), True
            build_wheelhouse(logs / "wheelhouse.log")
    started = time.monotonic()
    args = ["build", "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"OFFLINE={int(offline)}", "-t", IMAGE, str(REPO)]
    with (logs / "image-build.log").open("w") as log:
        done = subprocess.run([engine.cli, *args], stdout=log, stderr=subprocess.STDOUT, timeout=1800)
    if done.returncode != 0:
        raise SmokeFailed(f"building {IMAGE} failed; see {logs / 'image-build.log'}")
    size = int(engine("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout.strip())
    print(f"image {IMAGE}: built on {base} in {time.monotonic() - started:.0f} s, {size / 1e6:.0f} MB")
    return base


class ComposeDeployment:
    """The compose topology in `work_dir` under its own project name; `with` tears all of it down."""

    def __init__(self, engine: Engine, work_dir: Path) -> None:
        self.engine, self.work_dir = engine, work_dir
        self.project = f"fedras-smoke-{os.getpid()}"
        self.compose_file = work_dir / "docker-compose.yml"
        self.credentials, self.logs = work_dir / "credentials", work_dir / "logs"
        self.flwr_home = work_dir / "flwr-home"
        self.port = free_ports(1)[0]
        # FEDRAS_SUPERLINK (an edge device's setting) would send these SuperNodes elsewhere: not passed on
        self.env = {key: value for key, value in os.environ.items() if key != "FEDRAS_SUPERLINK"}
        self.env["FEDRAS_PORT"] = str(self.port)
        self.services: list[str] = []

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*self.engine.compose, "-p", self.project, "-f", str(self.compose_file), *args], cwd=self.work_dir,
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )
        if check and done.returncode != 0:
            raise SmokeFailed(f"`compose {' '.join(args)}` failed: {_tail(done.stderr or done.stdout)}")
        return done

    def prepare(self) -> None:
        """Compose file, throwaway credentials (also the intruder's), data/ and outputs/ the containers can use."""
        self.compose_file.write_text(render(NODES))
        self.services = list(yaml.safe_load(self.compose_file.read_text())["services"])
        nodes = [node.name for node in topology(NODES)]
        make_credentials(self.credentials, nodes)
        ensure_server_cert(self.credentials / INTRUDER, ensure_ca(self.credentials / CA_DIR), [INTRUDER])
        ensure_auth_keys(self.credentials / INTRUDER)  # a valid key pair, never registered
        for folder in ("data", "outputs"):
            (self.work_dir / folder).mkdir(exist_ok=True)
        # The containers run as uid 49999: these test-only files are made readable (results dir writable) by all,
        # where a real deployment chowns them (docs/deployment.md).
        for path in [self.work_dir, *self.work_dir.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o644)
        write_connection(self.flwr_home, f"127.0.0.1:{self.port}", str(self.credentials / SUPERLINK / CA_CERT))

    def up(self, timeout: float) -> None:
        """Start every service; wait until the SuperLink sees every SuperNode online."""
        if self.engine.staged_up:
            nodes = topology(NODES)
            first = [c.name for c in components(compose_layout(nodes), nodes) if c.node is None]  # SuperLink side
            self.compose("up", "-d", "--no-build", *first)
            registered = self.engine("wait", self.container("register"), timeout=timeout).stdout.split()[-1]
            if registered != "0":
                raise SmokeFailed(f"the key registration failed (exit {registered}); see {self.logs / 'register.log'}")
            self.compose("up", "-d", "--no-build", "--no-deps", *[s for s in self.services if s not in first])
        else:
            self.compose("up", "-d", "--no-build")
        deadline = time.monotonic() + timeout
        while len(online_nodes(self.flwr_home)) < NODES:
            if time.monotonic() > deadline:
                raise SmokeFailed(f"the SuperNodes were not all online after {timeout:.0f} s; see {self.logs}")
            time.sleep(2)
        print(f"{NODES} SuperNodes online (compose project {self.project}, SuperLink on 127.0.0.1:{self.port})")

    def start_intruder(self) -> None:
        """A SuperNode container with valid TLS but an unregistered key, on the deployment's network."""
        node = Node(INTRUDER, 0, NODES, *PROFILES[0])
        layout = dataclasses.replace(
            compose_layout(topology(NODES)), fleet=f"{SUPERLINK}:{COMPOSE_PORT}",
            node_addresses={INTRUDER: (INTRUDER, COMPOSE_NODE_PORT)},
        )
        environment = [item for key, value in FLOWER_ENV.items() for item in ("-e", f"{key}={value}")]
        self.engine(
            "run", "-d", "--name", self.intruder, "--label", self.label, "--network", f"{self.project}_default", *environment,
            "-v", f"{self.credentials / INTRUDER}:{COMPOSE_CREDENTIALS / INTRUDER}:ro", IMAGE, *supernode_command(layout, node),
        )

    def container(self, service: str) -> str:
        """The container of a service (its one replica)."""
        return self.engine.separator.join([self.project, service, "1"])

    @property
    def label(self) -> str:
        """The label Docker Compose and podman-compose put on everything of the project (the intruder too)."""
        return f"com.docker.compose.project={self.project}"

    @property
    def intruder(self) -> str:
        return f"{self.project}-{INTRUDER}"

    def intruder_refused(self, timeout: float) -> str:
        """The intruder's refusal line, once its container has exited with an error."""
        code = self.engine("wait", self.intruder, timeout=timeout).stdout.split()[-1]
        printed = self.engine("logs", self.intruder)
        refusal = [line for line in (printed.stdout + printed.stderr).splitlines() if REFUSED in line]
        if code == "0" or not refusal:
            raise SmokeFailed(f"the unregistered SuperNode was not refused (exit {code}); see {self.logs / INTRUDER}.log")
        return f"exit {code}: {refusal[0].strip()}"

    def save_logs(self) -> None:
        """logs/<service>.log for every service and the intruder (what the container printed, both streams)."""
        for service in [*self.services, INTRUDER]:
            name = self.intruder if service == INTRUDER else self.container(service)
            done = self.engine("logs", name, check=False)
            (self.logs / f"{service}.log").write_text(done.stdout + done.stderr)

    def evidence(self) -> list[str]:
        """The first log line of each EVIDENCE pattern, as `service: line`; SmokeFailed if one is missing."""
        found = []
        for service, text in EVIDENCE:
            log_file = self.logs / f"{service}.log"
            lines = [line for line in log_file.read_text().splitlines() if text in line] if log_file.exists() else []
            if not lines:
                raise SmokeFailed(f"{log_file} has no line with {text!r}")
            found.append(f"{service}: {_excerpt(lines[0], text)}")
        return found

    def leftovers(self) -> list[str]:
        """Containers, networks and volumes of this project (by its label) still present."""
        found = []
        for kind, listing, name in (
            ("container", ("ps", "-a"), "{{.Names}}"), ("network", ("network", "ls"), "{{.Name}}"),
            ("volume", ("volume", "ls"), "{{.Name}}"),
        ):
            listed = self.engine(*listing, "--filter", f"label={self.label}", "--format", name, check=False).stdout
            found += [f"{kind} {item}" for item in listed.split()]
        return found

    def __enter__(self) -> ComposeDeployment:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Save the logs, remove the intruder, every service, the network and the volumes, then check that
        nothing of the project is left; a second Ctrl-C or `kill` does not stop this halfway."""
        handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            steps = (
                self.save_logs,
                lambda: self.engine("rm", "-f", self.intruder, check=False),
                lambda: self.compose("down", "-v", "-t", "5", check=False),
            )
            for step in steps:
                try:
                    step()
                except (OSError, subprocess.TimeoutExpired) as err:
                    print(f"teardown: {err}")
            left = self.leftovers()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        if not left:
            print(f"teardown: no container, network or volume of {self.project} left")
        elif exc_type is None:
            raise SmokeFailed(f"teardown left {', '.join(left)}")
        else:
            print(f"teardown left {', '.join(left)}")


def smoke(engine: Engine, work_dir: Path, base: str | None, mirror: str, timeout: float) -> None:
    """Every step; SmokeFailed (or RunFailed) names the first that failed."""
    logs = work_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"engine: {engine.cli} {engine.version()} with {Path(engine.compose[0]).name}; work dir {work_dir}")
    build_image(engine, base, mirror, logs)
    with ComposeDeployment(engine, work_dir) as deployment:
        deployment.prepare()
        deployment.up(timeout=180)
        deployment.start_intruder()
        summary = run_deployed(run_config(RUN), deployment.flwr_home, work_dir, timeout, work_dir / "outputs" / "smoke")
        print("run: finished:completed")
        records = [json.loads(line) for line in (work_dir / "outputs" / "smoke" / "rounds.jsonl").read_text().splitlines()]
        if [r["round"] for r in records] != [1, 2] or records[-1].get("hr@10") is None or summary.get("supernodes") != NODES:
            raise SmokeFailed(
                f"the results are not those of 2 evaluated rounds on {NODES} SuperNodes: {records}, {summary.get('supernodes')}"
            )
        last = records[-1]
        print(f"results: outputs/smoke/rounds.jsonl has rounds 1-2 (round 2: {last['clients']} clients, "
              f"{last['up-bytes']:.0f} bytes up per user, hr@10 {last['hr@10']:.4f}); summary.json: {NODES} SuperNodes")
        print(f"intruder refused: {deployment.intruder_refused(timeout=120)}")
    print("\n".join(["log lines:", *deployment.evidence()]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-image", default=os.environ.get("BASE_IMAGE"), help="base image (default: see above)")
    parser.add_argument("--mirror", default="http://deb.debian.org/debian", help="Debian mirror for a base image made here")
    parser.add_argument("--work-dir", type=Path, help="folder for everything (default: a new temp folder)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds the Flower run may take (default 600)")
    args = parser.parse_args(argv)
    if args.work_dir and args.work_dir.exists() and any(args.work_dir.iterdir()):
        parser.error(f"--work-dir {args.work_dir} is not empty: name a new or empty folder (its files are made world-readable)")
    work_dir = (args.work_dir or Path(tempfile.mkdtemp(prefix="fedras-compose-smoke-"))).resolve()
    started = time.monotonic()
    previous = signal.signal(signal.SIGTERM, raise_interrupt)  # tear down on `kill` too, as on Ctrl-C
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        smoke(detect_engine(), work_dir, args.base_image, args.mirror, args.timeout)
    except (SmokeFailed, RunFailed, subprocess.TimeoutExpired, OSError) as err:
        print(f"compose smoke: FAILED after {time.monotonic() - started:.0f} s: {err} (logs: {work_dir / 'logs'})")
        return 1
    except Exception as err:  # anything unforeseen still ends with the verdict line
        print(f"compose smoke: FAILED after {time.monotonic() - started:.0f} s: {type(err).__name__}: {err} "
              f"(logs: {work_dir / 'logs'})")
        return 1
    except KeyboardInterrupt:
        print(f"compose smoke: INTERRUPTED after {time.monotonic() - started:.0f} s (logs: {work_dir / 'logs'})")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"compose smoke: PASSED in {time.monotonic() - started:.0f} s (logs: {work_dir / 'logs'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
