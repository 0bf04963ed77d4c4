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
from pathlib import Path, PurePosixPath

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


def _token_script() -> tuple[str, str]:
    """(the init container's python script, the token path it writes)."""
    pod = yaml.safe_load(DAEMONSET.read_text())["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["command"][:2] == ["python", "-c"]
    (mount,) = init["volumeMounts"]
    script = init["command"][2]
    (path,) = re.findall(r'"(/[^"]+)"', script)
    assert PurePosixPath(path).parent == PurePosixPath(mount["mountPath"])
    return script, path


def test_daemonset_server_reloads_only_with_the_pods_own_token(tmp_path: Path):
    """The server allows reload with the token file the init container writes; the agent sends
    that same file; it lives in an in-memory emptyDir only this pod's three containers mount."""
    pod = yaml.safe_load(DAEMONSET.read_text())["spec"]["template"]["spec"]
    env = yaml.safe_load(CONFIG.read_text())["data"] | {"NODE_NAME": "jetson-7"}
    agent, serve = (next(c for c in pod["containers"] if c["name"] == n) for n in ("agent", "serve"))
    _, token_path = _token_script()
    served = get_args_parser().parse_args(_expand(serve["args"], env))
    assert served.allow_reload is True and served.reload_token_file == Path(token_path)
    assert not served.release_key and not served.allow_unsigned  # a plain model file: no key needed
    trust = tmp_path / "root.json"
    trust.write_text("{}")
    argv = _entrypoint()[1:] + _expand(agent["args"], env)
    argv[argv.index("--trust") + 1] = str(trust)  # the parser checks the file exists
    assert get_args_parser().parse_args(argv).reload_token_file == Path(token_path)
    volumes = {v["name"]: v for v in pod["volumes"]}
    (init,) = pod["initContainers"]
    for c in (init, agent, serve):
        (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == str(Path(token_path).parent)]
        assert volumes[mount["name"]]["emptyDir"]["medium"] == "Memory"
        assert mount.get("readOnly", False) is (c is not init)  # only the init container writes
    # the pod's user is the one the token file belongs to (mode 0600): agent and server share it
    assert all("runAsUser" not in c.get("securityContext", {}) for c in (init, agent, serve))
    assert pod["securityContext"]["runAsUser"] == 1000


def test_the_init_container_writes_a_private_token_both_sides_accept(tmp_path: Path):
    from detpipe.edge.reload import read_token as agent_reads
    from detpipe.serving.access import read_token as server_reads

    script, token_path = _token_script()
    token = tmp_path / "reload-token"
    code = script.replace(token_path, str(token))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert token.stat().st_mode & 0o777 == 0o600
    value = server_reads(token)
    assert value == agent_reads(token) and len(value) >= 43  # 32 random bytes, urlsafe base64
    assert [p.name for p in tmp_path.iterdir()] == ["reload-token"]  # no temporary file left
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert server_reads(token) == value  # a restarted pod keeps its token
    other = tmp_path / "other"
    subprocess.run([sys.executable, "-c", script.replace(token_path, str(other))], check=True, timeout=60)
    assert server_reads(other) != value  # each pod its own


def test_dockerfile_entrypoint_and_no_key_material():
    entry = _entrypoint()
    assert entry[:3] == ["detpipe", "edge", "agent"]
    text = DOCKERFILE.read_text() + DAEMONSET.read_text() + "".join(u.read_text() for u in UNITS)
    secrets = r"\.pem\b|PRIVATE KEY|(SECRET_ACCESS_KEY|MINIO_SECRET_KEY|ACCESS_KEY_ID)\s*[:=]"
    assert not re.search(secrets, text)


def _unit_exec(unit: Path, key: str = "ExecStart") -> list[str]:
    line = next(ln for ln in unit.read_text().splitlines() if ln.startswith(f"{key}="))
    return shlex.split(line.removeprefix(f"{key}="))


def _unit_exec_start(unit: Path) -> list[str]:
    return _unit_exec(unit)


AGENT_UNIT = ROOT / "packaging" / "systemd" / "detpipe-edge-agent.service"
SERVE_UNIT = ROOT / "packaging" / "systemd" / "detpipe-edge-serve.service"
UNIT_TOKEN = "/run/detpipe-edge/reload-token"


def test_units_share_a_reload_token_made_on_the_device(tmp_path: Path):
    """Both units make the token if it is missing (the agent reads it at start, and the server
    starts only once the agent has installed a model), in the RuntimeDirectory they share; the
    server allows reload with it and the agent sends it. The command, run for real, writes a
    0600 token both sides accept and keeps an existing one."""
    from detpipe.edge.reload import read_token as agent_reads
    from detpipe.serving.access import read_token as server_reads

    pre = _unit_exec(AGENT_UNIT, "ExecStartPre")
    assert pre == _unit_exec(SERVE_UNIT, "ExecStartPre")
    for unit in (AGENT_UNIT, SERVE_UNIT):
        text = unit.read_text()
        assert "RuntimeDirectory=detpipe-edge\n" in text and "RuntimeDirectoryPreserve=yes" in text
        assert "RuntimeDirectoryMode=0700" in text
    serve_argv = _unit_exec(SERVE_UNIT)
    model = serve_argv[serve_argv.index("--model") + 1].replace("${MODEL_FILE}", "model.engine")
    serve_argv[serve_argv.index("--model") + 1] = model
    served = get_args_parser().parse_args(serve_argv[1:])
    assert served.allow_reload is True and served.reload_token_file == Path(UNIT_TOKEN)
    agent_argv = _unit_exec(AGENT_UNIT)
    assert agent_argv[agent_argv.index("--reload-token-file") + 1] == UNIT_TOKEN
    assert pre[0] == "/opt/detpipe/venv/bin/python" and pre[1] == "-c" and UNIT_TOKEN in pre[2]
    code = pre[2].replace(UNIT_TOKEN, str(tmp_path / "reload-token"))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    token = tmp_path / "reload-token"
    assert token.stat().st_mode & 0o777 == 0o600
    value = server_reads(token)
    assert value == agent_reads(token) and len(value) >= 43
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert server_reads(token) == value and [p.name for p in tmp_path.iterdir()] == ["reload-token"]


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
    # verify checks that the Exec* binaries exist: point them at this venv's detpipe and python
    detpipe = Path(sys.executable).with_name("detpipe")
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/opt/detpipe/venv/bin/", f"{detpipe.parent}/"))
    res = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60
    )
    problems = [ln for ln in (res.stdout + res.stderr).splitlines() if unit.name in ln or "Failed" in ln]
    assert res.returncode == 0 and not problems, res.stdout + res.stderr


def _documented_docker_runs() -> list[list[str]]:
    """The ``docker run`` command lines in Dockerfile.edge's header, split as a shell would."""
    runs, current = [], None
    for line in DOCKERFILE.read_text().splitlines():
        if not line.startswith("#   "):
            continue
        text = line.removeprefix("#   ").strip()
        if text.startswith("docker run "):
            current = []
        if current is None:
            continue
        current.append(text.removesuffix("\\"))
        if not text.endswith("\\"):
            runs.append(shlex.split(" ".join(current).replace('"$(hostname)"', "jetson-7")))
            current = None
    return runs


def test_documented_docker_runs_share_the_token_and_parse(tmp_path: Path):
    agent_run, serve_run = _documented_docker_runs()
    image = "detpipe-edge:0.1.0"
    trust = tmp_path / "root.json"
    trust.write_text("{}")
    argv = _entrypoint()[1:] + agent_run[agent_run.index(image) + 1 :]
    argv[argv.index("--trust") + 1] = str(trust)
    agent = get_args_parser().parse_args(argv)
    assert serve_run[serve_run.index("--entrypoint") + 1] == "detpipe"
    served = get_args_parser().parse_args(serve_run[serve_run.index(image) + 1 :])
    assert served.host == "127.0.0.1" and served.allow_reload is True
    assert agent.reload_token_file == served.reload_token_file == Path(UNIT_TOKEN)
    assert agent.reload_url == f"http://127.0.0.1:{served.port}/v2/repository/models/{served.name}/load"
    for run in (agent_run, serve_run):
        assert f"{Path(UNIT_TOKEN).parent}:{Path(UNIT_TOKEN).parent}:ro" in run  # read-only in both
        assert run[run.index("--network") + 1] == "host"  # one loopback for agent and server
