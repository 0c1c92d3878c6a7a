"""Real deployment: docker-compose.yml against the local launcher, and a FedRAS run across 3 SuperNodes
over TLS with SuperNode authentication on loopback (fedras_flwr/tooling/deploy_local.py), where a SuperNode whose key
was never registered is refused."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

import pytest
import yaml
from conftest import REPO

from fedras_flwr.tooling.credentials import ensure_auth_keys, ensure_ca, ensure_server_cert, make_credentials
from fedras_flwr.tooling.deploy import (
    CA_DIR,
    COMPOSE_CREDENTIALS,
    COMPOSE_FLEET,
    Component,
    Node,
    components,
    online_nodes,
    supernode_command,
    topology,
)
from fedras_flwr.tooling.deploy_local import LocalDeployment, free_ports, run_config

sys.path.insert(0, str(REPO / "scripts"))
from compose_gen import render  # noqa: E402

NODES = 3
RUN = [
    "num-server-rounds=2", "synthetic-users=60", "synthetic-items=200", "synthetic-mean-interactions=20",
    "clients-per-round=9", "eval-every=2", "codec=fedras", "hetero=mixed",
]
LAYOUT_FLAGS = {"--host", "--port", "--superlink", "--runtime-api-address", "--database", "--node-config"}  # differ by design


def compose_services() -> dict[str, dict]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]


def options(argv: list[str] | tuple[str, ...]) -> dict[str, str | None]:
    """`--flag value` pairs of a command (None for a bare flag)."""
    found: dict[str, str | None] = {}
    for i, token in enumerate(argv):
        if token.startswith("--"):
            following = argv[i + 1] if i + 1 < len(argv) else "--"
            found[token] = None if following.startswith("--") else following
    return found


def test_compose_file_is_the_generators_output():
    fix = "python scripts/compose_gen.py --nodes 3 > docker-compose.yml"
    assert (REPO / "docker-compose.yml").read_text() == render(NODES), f"regenerate it: {fix}"


def test_compose_services_run_what_the_local_launcher_runs(tmp_path):
    services = compose_services()
    local = LocalDeployment(tmp_path, NODES)  # nothing started: only its layout is used
    launched = {c.name: c.argv for c in components(local.layout, local.nodes)}
    assert list(services) == list(launched)
    for name, service in services.items():
        command, argv = service["command"], launched[name]
        assert command[0] == argv[0] and list(options(command)) == list(options(argv)), name
        for flag, value in options(command).items():
            expected = options(argv)[flag]
            if value and value.startswith(str(COMPOSE_CREDENTIALS)):  # same credential file, other root
                value = str(local.layout.credentials / PurePosixPath(value).relative_to(COMPOSE_CREDENTIALS))
            if flag not in LAYOUT_FLAGS:
                assert value == expected, (name, flag)
    for node in topology(NODES):  # per-node config and heterogeneity profile
        assert options(services[node.name]["command"])["--node-config"] == node.node_config(f"/app/node-state/{node.name}")
        assert options(launched[node.name])["--node-config"] == node.node_config(local.layout.state_dir(node))
        state_volume = f"{node.name}-state:/app/node-state/{node.name}"
        assert state_volume in services[f"superexec-clientapp-{node.partition_id + 1}"]["volumes"]
        assert options(services[node.name]["command"])["--superlink"] == COMPOSE_FLEET


def test_compose_mounts_every_credential_a_command_reads(tmp_path):
    """Each /app/credentials path of a command is mounted, from a file make_credentials() writes."""
    make_credentials(tmp_path / "credentials", [node.name for node in topology(NODES)])
    for name, service in compose_services().items():
        mounts = [volume.split(":")[:2] for volume in service["volumes"] if volume.startswith("./credentials/")]
        for source, _ in mounts:
            assert (tmp_path / source).exists() and PurePosixPath(source).parts[1] != CA_DIR, (name, source)  # CA key stays
        for value in filter(None, options(service["command"]).values()):
            if value.startswith(str(COMPOSE_CREDENTIALS)):
                assert any(value == target or value.startswith(target + "/") for _, target in mounts), (name, value)


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="no docker compose CLI",
)
def test_docker_compose_accepts_the_file():
    done = subprocess.run(["docker", "compose", "config", "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def start_intruder(deployment: LocalDeployment) -> subprocess.Popen:
    """A SuperNode with valid TLS and a key pair of its own that was never registered."""
    credentials = deployment.layout.credentials
    ensure_server_cert(credentials / "intruder", ensure_ca(credentials / CA_DIR), ["intruder", "127.0.0.1"])
    ensure_auth_keys(credentials / "intruder")
    node = Node("intruder", 0, NODES, "fast", 1000, 1000)
    layout = dataclasses.replace(
        deployment.layout, node_addresses={**deployment.layout.node_addresses, node.name: ("127.0.0.1", free_ports(1)[0])}
    )
    return deployment.start(Component(node.name, supernode_command(layout, node), node))


def test_fedras_on_three_supernodes_with_tls_and_node_auth(tmp_path):
    started = time.monotonic()
    with LocalDeployment(tmp_path / "deploy", NODES) as deployment:
        deployment.up(timeout=120)
        intruder = start_intruder(deployment)
        summary = deployment.run(run_config(RUN), timeout=420)
        assert intruder.wait(timeout=60) != 0
        assert "Failed to activate SuperNode" in (deployment.logs / "intruder.log").read_text()
        assert len(online_nodes(deployment.flwr_home)) == NODES
        groups = [process.pid for process in deployment.processes.values()]
    for pgid in groups:  # every process (group) the launcher started is gone
        with pytest.raises(ProcessLookupError):
            os.killpg(pgid, 0)
    out = Path(summary["out-dir"])
    assert out.is_relative_to(tmp_path)
    records = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2] and "hr@10" in records[-1]
    last = records[-1]
    assert last["clients"] > 0 and last["up-bytes"] > 0 and last["hr@10"] is not None and last["sim-time"] > 0
    saved = json.loads((out / "summary.json").read_text())
    assert saved["supernodes"] == NODES and saved["config"]["codec"] == "fedras" and saved["final"]["hr@10"] is not None
    print(f"deployment test: {time.monotonic() - started:.0f} s")
