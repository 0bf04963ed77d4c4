"""The edge agent's packaging, checked statically: DaemonSet, Dockerfile.edge, systemd units.

Schemas and hadolint run in tests/k8s and tests/docker for every manifest and Dockerfile;
here the edge-specific promises are checked: every command line parses with the real CLI
parser, the slots live on the node, keys come as files, nothing secret is in the files, and
``systemd-analyze verify`` accepts the units (skipped where systemd is not installed).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from detpipe.cli.main import get_args_parser

ROOT = Path(__file__).resolve().parents[2]
DAEMONSET = ROOT / "k8s" / "edge" / "edge-agent-daemonset.yaml"
CONFIG = ROOT / "k8s" / "edge" / "edge-config.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile.edge"
UNITS = sorted((ROOT / "packaging" / "systemd").glob("*.service"))


def _expand(args: list[str], env: dict[str, str]) -> list[str]:
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in args]


def _entrypoint() -> list[str]:
    m = re.search(r"^ENTRYPOINT\s+(\[.*\])$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert m, "Dockerfile.edge: no exec-form ENTRYPOINT"
    return json.loads(m.group(1))


def test_daemonset_runs_on_jetson_nodes_with_slots_on_the_host(tmp_path: Path):
    ds = yaml.safe_load(DAEMONSET.read_text())
    pod = ds["spec"]["template"]["spec"]
    assert (
        pod["nodeSelector"]["kubernetes.io/arch"] == "arm64"
        and pod["nodeSelector"]["detpipe.io/jetson"] == "true"
    )
    assert pod["runtimeClassName"] == "nvidia"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"]["hostPath"]["path"] == "/var/lib/detpipe-edge"
    # the node's own keys (detpipe edge enroll), not the Secret with the root user's
    assert volumes["minio-credentials"]["hostPath"]["path"] == "/etc/detpipe-edge/minio"
    assert "configMap" in volumes["trust"]
    env = yaml.safe_load(CONFIG.read_text())["data"] | {"NODE_NAME": "jetson-7"}
    agent, serve = (next(c for c in pod["containers"] if c["name"] == n) for n in ("agent", "serve"))
    assert not any(
        e.get("valueFrom", {}).get("secretKeyRef") for c in pod["containers"] for e in c.get("env", [])
    )
    trust = tmp_path / "root.json"
    trust.write_text("{}")
    argv = _entrypoint()[1:] + _expand(agent["args"], env)
    argv[argv.index("--trust") + 1] = str(trust)  # the parser checks the file exists
    args = get_args_parser().parse_args(argv)
    assert (args.edge_command, args.device_class, args.device_id) == (
        "agent",
        env["DEVICE_CLASS"],
        "jetson-7",
    )
    assert args.dir == Path("/var/lib/detpipe-edge")
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    assert mounts["state"] == str(args.dir) and mounts["trust"] == "/etc/detpipe-edge"
    served = get_args_parser().parse_args(_expand(serve["args"], env))
    assert served.model == f"/var/lib/detpipe-edge/current/{env['MODEL_FILE']}"
    assert args.reload_url == f"http://127.0.0.1:{served.port}/v2/repository/models/{served.name}/load"


def test_dockerfile_entrypoint_and_no_key_material():
    entry = _entrypoint()
    assert entry[:3] == ["detpipe", "edge", "agent"]
    text = DOCKERFILE.read_text() + DAEMONSET.read_text() + "".join(u.read_text() for u in UNITS)
    secrets = r"\.pem\b|PRIVATE KEY|(SECRET_ACCESS_KEY|MINIO_SECRET_KEY|ACCESS_KEY_ID)\s*[:=]"
    assert not re.search(secrets, text)


def _unit_exec_start(unit: Path) -> list[str]:
    line = next(ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


def test_agent_unit_command_line_parses(tmp_path: Path):
    argv = _unit_exec_start(ROOT / "packaging" / "systemd" / "detpipe-edge-agent.service")
    trust = tmp_path / "root.json"
    trust.write_text("{}")
    env = {
        "DETPIPE_EDGE_STORE": "s3://detpipe",
        "DETPIPE_EDGE_DEVICE_CLASS": "orin-sm87-trt10.3.0",
        "DETPIPE_EDGE_DEVICE_ID": "cam-17",
    }
    words = []
    for w in argv[1:]:
        if w == "$DETPIPE_EDGE_ARGS":  # systemd splits an unbraced $VAR into words
            words += [
                "--reload-url",
                "http://127.0.0.1:8080/v2/repository/models/yolo/load",
                "--group",
                "canary",
            ]
        else:
            words.append(re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], w))
    words[words.index("--trust") + 1] = str(trust)
    args = get_args_parser().parse_args(words)
    assert args.group == ["canary"]
    assert args.dir == Path("/var/lib/detpipe-edge") and args.device_id == "cam-17"
    unit = (ROOT / "packaging" / "systemd" / "detpipe-edge-agent.service").read_text()
    assert "Restart=always" in unit and "StateDirectory=detpipe-edge" in unit
    assert "LoadCredential=secretkey:" in unit and "DETPIPE_S3_SECRET_DIR=%d" in unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed here")
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_verify(unit: Path, tmp_path: Path):
    # verify checks that ExecStart's binary exists: point it at this venv's detpipe
    detpipe = Path(sys.executable).with_name("detpipe")
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/opt/detpipe/venv/bin/detpipe", str(detpipe)))
    res = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60
    )
    problems = [ln for ln in (res.stdout + res.stderr).splitlines() if unit.name in ln or "Failed" in ln]
    assert res.returncode == 0 and not problems, res.stdout + res.stderr
