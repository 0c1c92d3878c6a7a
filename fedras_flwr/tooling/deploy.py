"""Deployment adapter: ONE description of the real-deployment topology (a SuperLink with its SuperExec,
N SuperNodes each with its SuperExec, TLS and SuperNode authentication) and the exact command of every
component. `docker-compose.yml` (scripts/compose_gen.py) and the local launcher (`fedras deploy-local`,
deploy_local.py) both render these commands, for two layouts, so the two cannot drift (tests/test_deploy.py
checks it).

Flower 1.42 carries SuperLink <-> SuperNode traffic over HTTPS on one port; SuperNode authentication is
CLI-managed: the SuperLink runs with `--enable-supernode-auth` and only accepts SuperNodes whose public key
was registered with `flwr supernode register` (the `register` step below, idempotent).

    python -m fedras_flwr.tooling.deploy register --superlink superlink:8000 --root-certificates ca.crt --keys authorized/

No algorithm here, and no Flower import (it drives the Flower CLI).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

from fedras_flwr.tooling.flwr_cli import FLOWER_ENV, flwr_cli

# Credential files: one folder per component under the credentials root (credentials.py).
CA_DIR = "ca"  # the CA's own key: stays with the operator, never mounted
CA_CERT = "ca.crt"
TLS_CERT = "server.crt"  # TLS of the component's HTTPS API (SuperLink: Fleet/Control/Runtime; SuperNode: Runtime)
TLS_KEY = "server.key"
AUTH_KEY = "auth.key"  # SuperNode authentication: ECDSA P-384 private key (OpenSSH), public half in auth.pub
AUTH_PUB = "auth.pub"
AUTHORIZED = "authorized"  # the SuperLink's list of authorised SuperNodes: <node>.pub files
SUPERLINK = "superlink"
CONNECTION = "fedras-deploy"  # name of the Flower CLI connection to the deployed SuperLink

# Per-device heterogeneity profiles, cycled over the SuperNodes: (device-tier, uplink kbit/s, downlink kbit/s).
# The tiers exist in the uniform, mostly-slow and mixed scenarios; the keys only matter when `hetero` != none.
PROFILES: tuple[tuple[str, int, int], ...] = (("fast", 30000, 80000), ("mid", 5000, 20000), ("slow", 200, 800))


@dataclass(frozen=True)
class Node:
    """One SuperNode (an edge device) and what it tells the ClientApp about itself."""

    name: str
    partition_id: int
    num_partitions: int
    device_tier: str
    uplink_kbps: int
    downlink_kbps: int

    def node_config(self, state_dir: str) -> str:
        """The `--node-config` value (strings quoted, as Flower parses TOML literals). `state-dir` is the
        folder on the device where the ClientApp snapshots its users' private state (README "Reliability")."""
        return (
            f'partition-id={self.partition_id} num-partitions={self.num_partitions} '
            f'device-tier="{self.device_tier}" uplink-kbps={self.uplink_kbps} downlink-kbps={self.downlink_kbps} '
            f'state-dir="{state_dir}"'
        )


def topology(num_nodes: int) -> list[Node]:
    """`num_nodes` SuperNodes `supernode-1..N`, one partition each, profiles cycled from PROFILES."""
    if num_nodes < 1:
        raise ValueError("a deployment needs at least one SuperNode")
    return [Node(f"supernode-{i + 1}", i, num_nodes, *PROFILES[i % len(PROFILES)]) for i in range(num_nodes)]


@dataclass(frozen=True)
class Layout:
    """Where the components live: addresses they serve on and dial, credential and state paths."""

    bind_host: str  # the servers listen here
    superlink_port: int
    superlink: str  # how the ServerApp's SuperExec and the CLI reach the SuperLink
    fleet: str  # how the SuperNodes reach it (in compose: overridable for an edge device)
    node_addresses: dict[str, tuple[str, int]]  # SuperNode name -> its Runtime API, dialled by its SuperExec
    credentials: PurePath
    database: str
    node_state: PurePath  # each node's users' snapshots go to <node_state>/<node name>, on the node

    def credential(self, component: str, file: str) -> str:
        return str(self.credentials / component / file)

    def state_dir(self, node: Node) -> str:
        return str(self.node_state / node.name)


COMPOSE_PORT, COMPOSE_NODE_PORT = 8000, 9094
COMPOSE_FLEET = f"${{FEDRAS_SUPERLINK:-{SUPERLINK}:{COMPOSE_PORT}}}"  # an edge device sets FEDRAS_SUPERLINK=host:8000
COMPOSE_CREDENTIALS = PurePosixPath("/app/credentials")
COMPOSE_DATABASE = "/app/state/state.db"
COMPOSE_NODE_STATE = PurePosixPath("/app/node-state")


def compose_layout(nodes: list[Node]) -> Layout:
    """Containers: services reach each other by service name; every server listens on all interfaces."""
    return Layout(
        bind_host="0.0.0.0",
        superlink_port=COMPOSE_PORT,
        superlink=f"{SUPERLINK}:{COMPOSE_PORT}",
        fleet=COMPOSE_FLEET,
        node_addresses={node.name: (node.name, COMPOSE_NODE_PORT) for node in nodes},
        credentials=COMPOSE_CREDENTIALS,
        database=COMPOSE_DATABASE,
        node_state=COMPOSE_NODE_STATE,
    )


def local_layout(nodes: list[Node], work_dir: Path, superlink_port: int, node_ports: list[int]) -> Layout:
    """Local processes on loopback, each server on its own port, files under `work_dir`."""
    superlink = f"127.0.0.1:{superlink_port}"
    return Layout(
        bind_host="127.0.0.1",
        superlink_port=superlink_port,
        superlink=superlink,
        fleet=superlink,
        node_addresses={node.name: ("127.0.0.1", port) for node, port in zip(nodes, node_ports, strict=True)},
        credentials=work_dir / "credentials",
        database=str(work_dir / "state" / "state.db"),
        node_state=work_dir / "node-state",
    )


@dataclass(frozen=True)
class Component:
    """One process (one compose service); `one_shot` ones finish before the SuperNodes start."""

    name: str
    argv: tuple[str, ...]
    node: Node | None = None
    one_shot: bool = False


def superlink_command(layout: Layout) -> tuple[str, ...]:
    cred = layout.credential
    return (
        "flower-superlink", "--isolation", "process",
        "--host", layout.bind_host, "--port", str(layout.superlink_port),
        "--ssl-ca-certfile", cred(SUPERLINK, CA_CERT),
        "--ssl-certfile", cred(SUPERLINK, TLS_CERT),
        "--ssl-keyfile", cred(SUPERLINK, TLS_KEY),
        "--enable-supernode-auth",
        "--database", layout.database,
        "--disable-runtime-dependency-installation",
    )


def supernode_command(layout: Layout, node: Node) -> tuple[str, ...]:
    cred = layout.credential
    return (
        "flower-supernode", "--isolation", "process",
        "--superlink", layout.fleet,
        "--root-certificates", cred(node.name, CA_CERT),
        "--auth-supernode-private-key", cred(node.name, AUTH_KEY),
        "--host", layout.bind_host, "--port", str(layout.node_addresses[node.name][1]),
        "--ssl-ca-certfile", cred(node.name, CA_CERT),
        "--ssl-certfile", cred(node.name, TLS_CERT),
        "--ssl-keyfile", cred(node.name, TLS_KEY),
        "--node-config", node.node_config(layout.state_dir(node)),
    )


def superexec_command(address: str, ca_cert: str) -> tuple[str, ...]:
    """A SuperExec runs the ServerApp (beside the SuperLink) or the ClientApp (beside a SuperNode)."""
    return ("flower-superexec", "--runtime-api-address", address, "--root-certificates", ca_cert)


def register_command(layout: Layout) -> tuple[str, ...]:
    return (
        "python", "-m", "fedras_flwr.tooling.deploy", "register",
        "--superlink", layout.superlink,
        "--root-certificates", layout.credential(SUPERLINK, CA_CERT),
        "--keys", str(layout.credentials / AUTHORIZED),
    )


def components(layout: Layout, nodes: list[Node]) -> list[Component]:
    """Every process of the deployment, in start order."""
    found = [
        Component(SUPERLINK, superlink_command(layout)),
        Component("superexec-serverapp", superexec_command(layout.superlink, layout.credential(SUPERLINK, CA_CERT))),
        Component("register", register_command(layout), one_shot=True),
    ]
    for node in nodes:
        host, port = layout.node_addresses[node.name]
        clientapp = superexec_command(f"{host}:{port}", layout.credential(node.name, CA_CERT))
        found.append(Component(node.name, supernode_command(layout, node), node))
        found.append(Component(f"superexec-clientapp-{node.partition_id + 1}", clientapp, node))
    return found


def write_connection(flwr_home: Path, address: str, root_certificates: str, name: str = CONNECTION) -> Path:
    """A Flower CLI config with one TLS connection, made the default (so `flwr list/log` use it too)."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    path = flwr_home / "config.toml"
    path.write_text(
        f'[superlink]\ndefault = "{name}"\n\n[superlink.{name}]\n'
        f'address = "{address}"\nroot-certificates = "{root_certificates}"\n'
    )
    return path


def flwr_json(args: list[str], flwr_home: Path | str) -> dict[str, Any]:
    """The JSON answer of a Flower CLI command run with `--format json`, which exits 0 even on failure:
    look at its `success` (False with `error-message` when the SuperLink is unreachable, for instance)."""
    done = flwr_cli([*args, "--format", "json"], {**os.environ, **FLOWER_ENV, "FLWR_HOME": str(flwr_home)}, timeout=60)
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {"success": False, "error-message": f"{done.stdout[-1000:]} {done.stderr[-1000:]}"}


def online_nodes(flwr_home: Path | str) -> list[dict[str, Any]]:
    """The SuperNodes the SuperLink of the default connection sees online."""
    return [node for node in flwr_json(["supernode", "list"], flwr_home).get("nodes", []) if node["status"] == "online"]


def register(superlink: str, root_certificates: str, keys_dir: Path, timeout: float = 60.0) -> list[str]:
    """Register every `<node>.pub` in `keys_dir` with the SuperLink; keys already known count as done.

    Waits up to `timeout` seconds for the SuperLink to answer (it may still be starting). Returns the node
    names now authorised; raises RuntimeError naming the key otherwise.
    """
    keys = sorted(keys_dir.glob("*.pub"))
    if not keys:
        raise RuntimeError(f"no public keys (*.pub) in {keys_dir}")
    with tempfile.TemporaryDirectory(prefix="flwr-register-") as home:
        write_connection(Path(home), superlink, root_certificates)
        deadline = time.monotonic() + timeout
        while not (answer := flwr_json(["supernode", "list"], home)).get("success"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"SuperLink at {superlink} did not answer within {timeout:.0f} s: {answer}")
            time.sleep(1)
        for key in keys:
            answer = flwr_json(["supernode", "register", str(key), "--name", key.stem], home)
            if not answer.get("success") and "already in use" not in str(answer.get("error-message")):
                raise RuntimeError(f"registering {key} failed: {answer}")
    return [key.stem for key in keys]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    reg = commands.add_parser("register", help="authorise the SuperNodes whose public keys are in --keys")
    reg.add_argument("--superlink", required=True, help="host:port of the SuperLink")
    reg.add_argument("--root-certificates", required=True, help="CA certificate that signed the SuperLink's")
    reg.add_argument("--keys", required=True, type=Path, help="folder of <node>.pub files")
    reg.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the SuperLink")
    args = parser.parse_args(argv)
    names = register(args.superlink, args.root_certificates, args.keys, args.timeout)
    print(json.dumps({"authorised": names}))


if __name__ == "__main__":
    main()
