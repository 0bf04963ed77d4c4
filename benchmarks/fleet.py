"""Benchmark: a fleet of simulated devices on the real agent code, under the rollout controller.

    .venv/bin/python benchmarks/fleet.py                            # 1,000 devices; 1,000 and 10,000 reports
    .venv/bin/python benchmarks/fleet.py --quick                    # 50 devices, 300 reports (smoke run)
    .venv/bin/python benchmarks/fleet.py --devices 1000 --reports 1000,10000 --json runs/bench-fleet/r.json

One run, one machine, loopback only. A moto S3 server process holds the fleet's bucket (as
in the tests); a counting reverse proxy process of this script sits in front of it and
counts every HTTP request and its bytes (request and response, headers and bodies), by
method and key area (TUF metadata, artifacts, reports, ...). Every device is an
:class:`detpipe.edge.agent.Agent` with its own state directory, device key and enrollment
(a signed registration), run in threads of this process (``--concurrency`` devices polling
at once): the agent's real TUF refresh, download, verify, install, slot switch and signed
report to the store. Only the
health check is replaced (in this benchmark only, and the output says so): the real
``check_model`` runs once per artifact sha256 and its verdict is reused for every device
that activates that artifact. Each poll gets a fresh connection pool, as a device that
polls every few minutes would. Times are wall time per poll with that many devices polling
at once, on the loaded machine: the request and byte counts are the figures; times are context.

1. traffic: requests and bytes per device for an idle poll (nothing new) and for an update
   (a new version at 100 %), against the peer: python-tuf's plain ``Updater`` per device
   (its own metadata directory, provisioned with root.json; per poll a fresh ``Updater``,
   ``refresh()``, ``get_targetinfo`` and ``download_target`` unless ``find_cached_target``
   has it) over plain HTTP to the same bucket through the same proxy (a public-read policy on
   ``ota/``: what an HTTP mirror serves). A third side is the agent itself on that HTTP
   mirror (``--store http://...``). The sides alternate in ``--rounds`` interleaved rounds;
   medians.
2. rollout: a good release under the controller (steps 1,10,50,100, bake 0, min reports 1,
   max failure 5 %) in simulated time: a round is every device polling once (started in a
   shuffled order), then one controller cycle (a fresh ``Controller``: one ``--once`` run); rounds
   and wall seconds until 99 % of the fleet runs it.
3. abort: a release whose output is NaN (fails the health check on every device), the same
   way: how many devices ever activated it before the controller's signed rollback.
4. controller cost: a second bucket holding N registrations and N signed reports (written
   straight to the store, each signed with its own device key); one controller cycle that
   counts them (no seen state yet), and the next one, timed and counted at the proxy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tests"))  # store_servers: the moto server process, as the tests start it
sys.path.insert(2, str(Path(__file__).resolve().parent))

from fleet_proxy import CountingProxy, Meter  # noqa: E402

CLASS = "cpu"
STEPS = (1, 10, 50, 100)
STAND_IN = (
    "health check: fast stand-in (benchmark only): detpipe's check_model runs once per artifact "
    "sha256, and its verdict is reused for every device that activates that artifact"
)
COUNTED = (
    "counted: HTTP requests and their bytes (request + response, headers and bodies) at a counting "
    "reverse proxy on loopback in front of the moto S3 server process (TCP/IP overhead and the "
    "benchmark's own control requests not included)"
)
log = logging.getLogger("fleet-bench")


# -- models: a tiny detector and a NaN one ---------------------------------------------------------


def tiny_model(path: Path, seed: int, nan: bool = False) -> Path:
    """A 64 px, 2-class YOLO-shaped ONNX model (one conv: output (1, 6, 64)); ``nan``: its output is NaN.

    What the real health check needs (a fixed input size, the ``names`` metadata, a
    ``(batch, 4 + classes, anchors)`` output) and nothing more; ``seed`` makes each version's bytes
    its own.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array((rng.standard_normal((6, 3, 8, 8)) * 0.05).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, 6, 64], dtype=np.int64), "shape")
    inits = [w, shape]
    nodes = [
        helper.make_node("Conv", ["images", "w"], ["conv"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Reshape", ["conv", "shape"], ["raw" if nan else "output0"]),
    ]
    if nan:
        inits.append(numpy_helper.from_array(np.array(np.nan, dtype=np.float32), "nan"))
        nodes.append(helper.make_node("Mul", ["raw", "nan"], ["output0"]))
    graph = helper.make_graph(
        nodes,
        "fleet-bench",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 64])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for key, value in (("names", {"0": "a", "1": "b"}), ("imgsz", [64, 64]), ("fleet_bench_seed", seed)):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(model, str(path))
    return path


class HealthStandIn:
    """``check_model``'s stand-in: the real check once per artifact sha256, its verdict reused."""

    def __init__(self) -> None:
        from detpipe.edge import health

        self.real = health.check_model
        self.verdicts: dict[str, str | None] = {}
        self.activations: Counter[str] = Counter()  # sha256 -> devices that ran the check on it
        self.lock = threading.Lock()

    def __call__(self, path: Path, threads: int | None = 1) -> Any:
        from detpipe.edge.health import Health, HealthCheckFailed
        from detpipe.io import sha256_file

        sha = sha256_file(path)
        with self.lock:  # devices poll in threads: one real check per artifact, every activation counted
            self.activations[sha] += 1
            if sha not in self.verdicts:
                try:
                    self.real(path, threads=threads)
                    self.verdicts[sha] = None
                except HealthCheckFailed as e:
                    self.verdicts[sha] = str(e)
            verdict = self.verdicts[sha]
        if verdict is not None:
            raise HealthCheckFailed(verdict)
        return Health((1, 6, 64), 0)

    @contextlib.contextmanager
    def installed(self) -> Iterator[HealthStandIn]:
        import detpipe.edge.agent as agent_module

        saved = agent_module.check_model
        agent_module.check_model = self
        try:
            yield self
        finally:
            agent_module.check_model = saved


# -- the fleet -----------------------------------------------------------------------------------------


class PeerDevice:
    """python-tuf's plain client: per poll a fresh ``Updater`` (the provisioned root as its bootstrap,
    as python-tuf recommends and as the agent does) over the device's own metadata directory."""

    def __init__(self, where: Path, root: bytes, metadata_url: str, targets_url: str) -> None:
        self.metadata, self.targets = where / "metadata", where / "targets"
        self.metadata.mkdir(parents=True)
        self.targets.mkdir()
        self.root, self.metadata_url, self.targets_url = root, metadata_url, targets_url

    def poll(self, target: str) -> bool:
        """Refresh, then download ``target`` unless cached; returns whether it downloaded."""
        from tuf.ngclient import Updater

        updater = Updater(
            str(self.metadata), self.metadata_url, str(self.targets), self.targets_url, bootstrap=self.root
        )
        updater.refresh()
        info = updater.get_targetinfo(target)
        if info is None:
            raise RuntimeError(f"peer: {target} not in the verified targets")
        if updater.find_cached_target(info) is not None:
            return False
        updater.download_target(info)
        return True


@dataclass
class Fleet:
    """The bucket, the keys, the devices (ours and the peer's) and the meter."""

    work: Path
    uri: str
    store: Any  # the publisher's and controller's store (through the proxy)
    s3: Any  # S3Config of the devices (through the proxy)
    keys: Path
    meter: Meter
    agents: list[Any]
    peers: list[PeerDevice]
    mirror_agents: list[Any]
    stand_in: HealthStandIn
    concurrency: int = 4
    published: dict[str, str] = field(default_factory=dict)  # version -> sha256
    seed: int = 0

    def publish(self, version: str, pct: int, nan: bool = False) -> str:
        from detpipe.edge.publish import PublishConfig, publish_version

        self.seed += 1
        path = tiny_model(self.work / f"model-{version}.onnx", self.seed, nan=nan)
        (release,) = publish_version(self.store, PublishConfig(CLASS, version, path, "onnx", self.keys, pct))
        self.published[version] = release.sha256
        return release.sha256

    def artifact_bytes(self) -> int:
        return max(p.stat().st_size for p in self.work.glob("model-*.onnx"))

    def poll(self, agent: Any) -> dict[str, Any]:
        """One poll of one device, on a connection pool of its own (a device polls every few minutes)."""
        from detpipe.edge.fetcher import OtaFetcher

        agent.fetcher = OtaFetcher(self.s3)
        return agent.run_once()

    def each(self, fn: Callable[[Any], Any], devices: list[Any]) -> list[tuple[Any, Any]]:
        """``fn(device)`` for every device, ``concurrency`` at a time; (device, result) as they finish."""
        done: list[tuple[Any, Any]] = []

        def one(device: Any) -> None:
            done.append((device, fn(device)))

        with ThreadPoolExecutor(self.concurrency) as pool:
            list(pool.map(one, devices))
        return done

    def round(self, order_seed: str) -> list[tuple[Any, dict[str, Any]]]:
        """Every device polls once, started in a shuffled order; (agent, result) as they finish."""
        order = list(self.agents)
        random.Random(order_seed).shuffle(order)
        return self.each(self.poll, order)

    def running(self, version: str) -> int:
        n = 0
        for a in self.agents:
            manifest = a.slots.manifest(a.slots.active()) or {}
            n += manifest.get("version") == version
        return n


def public_read(bucket: str) -> dict[str, Any]:
    """A bucket policy: anyone may GET ``ota/metadata/*`` and ``ota/targets/*`` (an HTTP mirror's view)."""
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": [f"arn:aws:s3:::{bucket}/ota/{d}/*" for d in ("metadata", "targets")]}],
    }  # fmt: skip


def make_fleet(
    work: Path, n: int, proxy: CountingProxy, moto_endpoint: str, peers: int, mirrors: int
) -> Fleet:
    from minio import Minio
    from store_servers import ACCESS_KEY, SECRET_KEY, s3_config

    from detpipe.edge.agent import Agent, AgentConfig
    from detpipe.edge.keys import keygen, load_signer
    from detpipe.edge.reports import register, trusted_root
    from detpipe.store import RetryPolicy, open_store

    bucket = "fleet-bench"
    admin = Minio(moto_endpoint, ACCESS_KEY, SECRET_KEY, secure=False, region="us-east-1")
    admin.make_bucket(bucket)
    admin.set_bucket_policy(bucket, json.dumps(public_read(bucket)))
    s3 = s3_config(proxy.endpoint, read_timeout_s=120.0, retry=RetryPolicy(attempts=3, base_delay_s=0.2))
    uri = f"s3://{bucket}"
    store = open_store(uri, s3=s3)
    keys = work / "keys"
    keygen(keys)
    fleet = Fleet(work, uri, store, s3, keys, Meter(proxy), [], [], [], HealthStandIn())
    fleet.publish("1", 100)
    trust = keys / "root.json"
    for i in range(n):
        device_id = f"dev-{i:05d}"
        cfg = AgentConfig(uri, CLASS, device_id, trust, work / "devices" / device_id, interval_s=300)
        fleet.agents.append(Agent(cfg, s3=s3))
    root = trusted_root(store)
    signer = load_signer(keys, "targets")
    for a in fleet.agents:  # enrollment: each device key registered, signed by the targets key
        register(store, CLASS, a.cfg.device_id, a.signer.public_key, [signer], root)
    mirror = f"http://{proxy.endpoint}/{bucket}"  # the same objects over plain HTTP (public-read policy)
    for i in range(mirrors):
        device_id = f"mirror-{i:05d}"
        cfg = AgentConfig(
            mirror, CLASS, device_id, trust, work / "mirror-devices" / device_id, interval_s=300
        )
        fleet.mirror_agents.append(Agent(cfg, s3=s3))
    base = f"{mirror}/ota"
    for i in range(peers):
        fleet.peers.append(PeerDevice(work / "peers" / f"peer-{i:05d}", trust.read_bytes(),
                                      f"{base}/metadata/", f"{base}/targets/"))  # fmt: skip
    return fleet


# -- 1. traffic per device: ours and the peer ------------------------------------------------------------


def traffic(fleet: Fleet, rounds: int) -> dict[str, Any]:
    """First contact, then ``rounds`` interleaved idle and update rounds of every side."""

    def ours(agents: list[Any], expect: str) -> Callable[[], None]:
        def poll_all() -> None:
            outcomes = Counter(r["outcome"] for _, r in fleet.each(fleet.poll, agents))
            if outcomes != {expect: len(agents)}:
                raise SystemExit(f"expected every device {expect}, got {dict(outcomes)}")

        return poll_all

    def peer(target: str, downloads: bool) -> Callable[[], None]:
        def poll_all() -> None:
            got = [r for _, r in fleet.each(lambda p: p.poll(target), fleet.peers)]
            if got != [downloads] * len(got):
                raise SystemExit(f"peer: {sum(got)} of {len(got)} downloaded {target}, expected {downloads}")

        return poll_all

    devices = {"ours": fleet.agents, "mirror": fleet.mirror_agents, "peer": fleet.peers}
    sides = [s for s, d in devices.items() if d]
    runs: dict[str, list[dict[str, Any]]] = {}

    def measure(name: str, side: str, poll_all: Callable[[], None]) -> None:
        with fleet.meter.measure() as m:
            poll_all()
        n = len(devices[side])
        runs.setdefault(f"{side}-{name}", []).append(
            {**m.traffic.per(n), "ms_per_poll": 1000 * m.seconds / n}
        )

    def step(name: str, version: str, update: bool) -> None:
        for side in order:
            if side == "peer":
                measure(name, side, peer(f"{CLASS}/{version}/model.onnx", downloads=update))
            else:
                measure(name, side, ours(devices[side], "installed" if update else "unchanged"))

    version, order = "1", sides
    step("first", version, update=True)
    for r in range(rounds):
        order = sides if r % 2 == 0 else sides[::-1]
        step("idle", version, update=False)
        version = str(int(version) + 1)
        fleet.publish(version, 100)
        step("update", version, update=True)
    out: dict[str, Any] = {"rounds": rounds, "artifact_bytes": fleet.artifact_bytes(),
                           "devices": {s: len(devices[s]) for s in sides}}  # fmt: skip
    for name, values in runs.items():
        med = {k: statistics.median(v[k] for v in values) for k in ("requests", "bytes", "ms_per_poll")}
        out[name] = {**med, "by_area": values[-1]["by_area"], "runs": [
            {k: v[k] for k in ("requests", "bytes", "ms_per_poll")} for v in values]}  # fmt: skip
    for kind in ("first", "idle", "update"):
        mine, theirs = out[f"ours-{kind}"], out[f"peer-{kind}"]
        out[f"ratio-{kind}"] = {k: mine[k] / theirs[k] for k in ("requests", "bytes", "ms_per_poll")}
    return out


# -- 2./3. rollouts under the controller -------------------------------------------------------------------


def controller(fleet: Fleet, version: str) -> Any:
    from detpipe.edge.controller import Controller, RolloutSpec

    spec = RolloutSpec(steps=STEPS, max_failure_pct=5.0, min_reports=1, bake=timedelta(0))
    return Controller(fleet.store, CLASS, version, keys=fleet.keys, spec=spec, owner="fleet-bench")


def rollout(fleet: Fleet, version: str, nan: bool, max_rounds: int = 12) -> dict[str, Any]:
    """Publish ``version`` at 0 %, then rounds of (every device polls; one controller cycle).

    An activation is a device switching ``current`` to the version (its health check then runs).
    For the NaN release the activations are split at the first failed report: before it, and in
    the window from it to the signed abort (the rest of that round's polls).
    """
    from detpipe.edge.rollout import bucket

    n = len(fleet.agents)
    sha = fleet.publish(version, 0, nan=nan)
    t0 = time.perf_counter()
    cycles: list[dict[str, Any]] = []
    rounds: list[dict[str, Any]] = []

    def cycle(r: int) -> Any:
        with fleet.meter.measure() as m:
            res = controller(fleet, version).run_once()
        cycles.append({"round": r, "action": res.action, "pct": res.pct, "status": res.status,
                       "seconds": m.seconds, "requests": m.traffic.requests, "counts": res.counts,
                       "wall_s": time.perf_counter() - t0})  # fmt: skip
        return res

    status = cycle(0).status
    activated = {"before_first_failure": 0, "in_window": 0, "after_abort": 0}
    first_failure: dict[str, Any] | None = None
    window_polls = 0
    reached: dict[str, Any] | None = None
    for r in range(1, max_rounds + 1):
        pct = cycles[-1]["pct"]
        with fleet.meter.measure() as m:
            polls = fleet.round(order_seed=f"{version}:{r}")
        for i, (_, result) in enumerate(polls):
            if first_failure is not None and status != "aborted":
                window_polls += 1
            if result.get("version") == version and result["outcome"] in (
                "installed",
                "rolled-back",
                "retrying",
            ):
                phase = (
                    "after_abort"
                    if status == "aborted"
                    else "in_window"
                    if first_failure
                    else "before_first_failure"
                )
                activated[phase] += 1
                if result["outcome"] == "rolled-back" and first_failure is None:
                    selected = sum(bucket(a.cfg.device_id, version) < pct for a in fleet.agents)
                    first_failure = {"round": r, "poll": i, "pct": pct, "selected_at_pct": selected}
        running = fleet.running(version)
        rounds.append({"round": r, "running": running, "seconds": m.seconds, "requests": m.traffic.requests,
                       "ms_per_poll": 1000 * m.seconds / n})  # fmt: skip
        if not nan and reached is None and running >= 0.99 * n:
            reached = {"rounds": r, "seconds": time.perf_counter() - t0}
        if status in ("completed", "aborted"):
            break  # one round after the end: every device runs it / nobody takes it any more
        status = cycle(r).status
    out: dict[str, Any] = {
        "version": version, "sha256": sha, "devices": n, "status": status, "cycles": cycles, "rounds": rounds,
        "first_step_pct": STEPS[0],
        "first_step_selected": sum(bucket(a.cfg.device_id, version) < STEPS[0] for a in fleet.agents),
        "health_checks_run": fleet.stand_in.activations[sha], "running_at_end": fleet.running(version),
    }  # fmt: skip
    if nan:
        ever = sum(activated.values())
        limit = (first_failure or {}).get("selected_at_pct", 0)
        out.update(activated=ever, activated_split=activated, first_failure=first_failure,
                   window_polls=window_polls)  # fmt: skip
        out["goal_met"] = (
            ever <= limit
            and activated["after_abort"] == 0
            and out["running_at_end"] == 0
            and status == "aborted"
        )
    else:
        out["to_99pct"] = reached
    return out


# -- 4. the controller's own cycle at N reports --------------------------------------------------------------


def controller_cost(work: Path, n: int, proxy: CountingProxy, moto_endpoint: str, keys: Path,
                    template: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """N registrations and signed reports written straight to a bucket; controller cycles, measured:
    the first count (no seen state), the next with no new report, then one after a fifth of the
    devices reported again."""
    from minio import Minio
    from securesystemslib.signer import CryptoSigner
    from store_servers import ACCESS_KEY, SECRET_KEY, s3_config

    from detpipe.edge.controller import Controller, RolloutSpec
    from detpipe.edge.keys import load_signer
    from detpipe.edge.publish import PublishConfig, publish_version
    from detpipe.edge.reports import register, report_key, sign_report, trusted_root
    from detpipe.edge.rollout import bucket as rollout_bucket
    from detpipe.store import RetryPolicy, open_store

    name = f"fleet-bench-reports-{n}"
    Minio(moto_endpoint, ACCESS_KEY, SECRET_KEY, secure=False, region="us-east-1").make_bucket(name)
    retry = RetryPolicy(attempts=3, base_delay_s=0.2)
    direct = open_store(f"s3://{name}", s3=s3_config(moto_endpoint, read_timeout_s=120.0, retry=retry))
    counted = open_store(f"s3://{name}", s3=s3_config(proxy.endpoint, read_timeout_s=120.0, retry=retry))
    d = work / f"reports-{n}"
    d.mkdir()
    shas = {}
    for i, v in enumerate(("1", "2")):
        (r,) = publish_version(
            direct,
            PublishConfig(
                CLASS, v, tiny_model(d / f"m{v}.onnx", 1000 + i), "onnx", keys, 100 if v == "1" else 0
            ),
        )
        shas[v] = r.sha256
    root = trusted_root(direct)
    targets = load_signer(keys, "targets")
    signers: dict[str, CryptoSigner] = {}

    def write(i: int, seq: int = 1) -> None:
        device_id = f"sim-{i:06d}"
        if seq == 1:
            signers[device_id] = CryptoSigner.generate_ed25519()
            register(direct, CLASS, device_id, signers[device_id].public_key, [targets], root)
        v = "2" if rollout_bucket(device_id, "2") < STEPS[0] else "1"
        fields = {**template, "device_id": device_id, "version": v, "sha256": shas[v], "tried_version": v}
        doc = sign_report(fields, signers[device_id], seq)
        data = json.dumps(doc, indent=2).encode()
        direct.put_bytes(report_key(device_id), data, content_type="application/json")

    t = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(n)))
    written_s = time.perf_counter() - t
    spec = RolloutSpec(steps=STEPS, max_failure_pct=5.0, min_reports=1, bake=timedelta(0))
    meter = Meter(proxy)
    cycles = []
    for label in ("start", "first count (no seen state)", "next, no new report", "next, 20 % new reports"):
        if label.endswith("20 % new reports"):  # a device polls every 5 min, the controller every minute
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda i: write(i, seq=2), range(0, n, 5)))
        with meter.measure() as m:
            res = Controller(counted, CLASS, "2", keys=keys, spec=spec, owner="fleet-bench").run_once()
        cycles.append({"cycle": label, "action": res.action, "pct": res.pct, "counts": res.counts,
                       "seconds": m.seconds, "requests": m.traffic.requests, "bytes": m.traffic.bytes,
                       "by_area": m.traffic.per(1)["by_area"]})  # fmt: skip
    return {"reports": n, "written_s": written_s, "cycles": cycles}


# -- output ------------------------------------------------------------------------------------------------


def _kib(b: float) -> str:
    return f"{b / 1024:.1f} KiB"


def summary(res: dict[str, Any]) -> str:
    """The printed report."""
    tr = res["traffic"]
    n = tr["devices"]
    lines = [
        f"fleet benchmark, {res['date']}, {res['machine']}; moto {res['moto']}, tuf {res['tuf']}; "
        f"code {res['code']}",
        f"{n['ours']} devices (real Agent code, one process, {res['concurrency']} polling at once) against "
        "the moto S3 server process",
        STAND_IN,
        COUNTED,
        "",
        f"1. per device and poll (mean over the devices; medians of {tr['rounds']} interleaved rounds; "
        f"artifact {tr['artifact_bytes']} bytes)",
        f"   ours: the agent on s3:// ({n['ours']} devices; its signed report included); mirror: the "
        f"agent on the same bucket over plain HTTP ({n.get('mirror', 0)} devices; no report: a read-only "
        "mirror);",
        f"   peer: python-tuf Updater.refresh() + get_targetinfo + download_target ({n['peer']} devices, "
        "no report)",
        f"   {'':24} {'ours':>10} {'mirror':>10} {'peer':>10} {'ours/peer':>10}",
    ]
    for kind in ("first", "idle", "update"):
        row = {s: tr.get(f"{s}-{kind}") for s in ("ours", "mirror", "peer")}
        label = {"first": "first contact", "idle": "idle poll", "update": "update"}[kind]
        for key, fmt in (("requests", "{:10.2f}"), ("bytes", "{:>10}"), ("ms_per_poll", "{:10.1f}")):
            cells = []
            for side in ("ours", "mirror", "peer"):
                v = row[side][key] if row[side] else None
                cells.append(
                    " " * 10 if v is None else _kib(v).rjust(10) if key == "bytes" else fmt.format(v)
                )
            what = {"requests": "requests", "bytes": "bytes", "ms_per_poll": "ms"}[key]
            lines.append(f"   {label + ': ' + what:24} {' '.join(cells)} {tr[f'ratio-{kind}'][key]:10.2f}")
        split = ", ".join(f"{k} {v['requests']:.2f}" for k, v in row["ours"]["by_area"].items())
        lines.append(f"     ours by request: {split}")
    good = res["rollout_good"]
    reach = good["to_99pct"]
    lines += [
        "",
        f"2. good release under the controller (steps {','.join(map(str, STEPS))}, bake 0, min reports 1): "
        f"99 % of {good['devices']} devices run it after "
        + (f"{reach['rounds']} rounds, {reach['seconds']:.1f} s wall" if reach else "never (see the rounds)"),
        "   cycles: " + "; ".join(f"{c['round']}: {c['action']} -> {c['pct']}%" for c in good["cycles"]),
        "   running it after each round: " + ", ".join(str(r["running"]) for r in good["rounds"]),
    ]
    bad = res["rollout_nan"]
    split, ff = bad["activated_split"], bad["first_failure"] or {}
    lines += [
        "",
        f"3. NaN release (fails its health check on every device): {bad['activated']} of {bad['devices']} "
        f"devices ever activated it before the abort ({100 * bad['activated'] / bad['devices']:.1f} %)",
        f"   {split['before_first_failure']} before the first failed report (at {ff.get('pct')} %, which "
        f"selects {ff.get('selected_at_pct')}; the first step {STEPS[0]} % selects "
        f"{bad['first_step_selected']}), "
        f"{split['in_window']} in the window to the abort ({bad['window_polls']} polls), "
        f"{split['after_abort']} after it; running it at the end: {bad['running_at_end']}",
        f"   goal (no more than the step live at the first failed report selects, window included; none "
        f"after the abort, none on it at the end): "
        f"{'met' if bad['goal_met'] else 'MISSED'}",
        "   cycles: " + "; ".join(f"{c['round']}: {c['action']} -> {c['pct']}%" for c in bad["cycles"]),
        "",
        "4. the controller's own cycle (a fresh Controller each, as one `detpipe edge rollout --once`)",
    ]
    for c in res["controller_cost"]:
        for cy in c["cycles"][1:]:
            lines.append(
                f"   {c['reports']:>6} reports, {cy['cycle']}: {cy['requests']} requests, "
                f"{_kib(cy['bytes'])}, {cy['seconds']:.2f} s ({cy['action']} -> {cy['pct']}%)"
            )
    lines.append(f"total {res['total_s']:.0f} s")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Bad input: one line, exit 2."""
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = _Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=1000, help="simulated devices (default 1000)")
    p.add_argument("--peers", type=int, default=None, help="peer devices (default: --devices, at most 250)")
    p.add_argument("--concurrency", type=int, default=4, help="devices polling at once (default 4)")
    p.add_argument(
        "--reports", default="1000,10000", help="report counts for the controller cost (1000,10000)"
    )
    p.add_argument("--mirror-devices", type=int, default=100, help="agents on the HTTP mirror (default 100)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved traffic rounds (default 2)")
    p.add_argument("--quick", action="store_true", help="smoke run: 50 devices, 300 reports, 1 round")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.quick:
        args.devices, args.reports, args.rounds, args.mirror_devices = 50, "300", 1, 10
    try:
        reports = [int(x) for x in args.reports.split(",")]
    except ValueError:
        p.error(f"--reports {args.reports!r}: comma-separated counts, e.g. 1000,10000")
    if args.devices < 10 or any(r < 1 for r in reports) or min(args.rounds, args.concurrency) < 1:
        p.error("--devices at least 10, --reports, --rounds and --concurrency at least 1")
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("detpipe.edge.agent").setLevel(
        logging.CRITICAL
    )  # 'failed its check' x devices: expected
    peers = args.peers if args.peers is not None else min(args.devices, 250)
    res = run(args.devices, peers, args.mirror_devices, reports, args.rounds, args.concurrency)
    print(summary(res))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


def run(
    devices: int, peers: int, mirrors: int, reports: list[int], rounds: int, concurrency: int
) -> dict[str, Any]:
    from importlib.metadata import version

    from store_servers import MotoServer

    from detpipe.edge.reports import report_key
    from detpipe.store.manifest import code_version

    res: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": f"{_cpu()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}",
        "moto": version("moto"), "tuf": version("tuf"), "devices": devices, "concurrency": concurrency,
        "health_check": STAND_IN, "counted": COUNTED, "code": code_version(),
    }  # fmt: skip
    moto = MotoServer()
    proxy = CountingProxy(moto.port)
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
            work = Path(tmp)
            stand_in = HealthStandIn()
            with stand_in.installed():
                t = time.perf_counter()
                fleet = make_fleet(work, devices, proxy, moto.endpoint, peers, mirrors)
                fleet.stand_in, fleet.concurrency = stand_in, concurrency
                res["setup_s"] = time.perf_counter() - t
                _progress(f"{devices} devices enrolled ({res['setup_s']:.0f} s)")
                res["traffic"] = traffic(fleet, rounds)
                _progress("traffic done")
                last = str(1 + rounds)
                good = str(int(last) + 1)
                res["rollout_good"] = rollout(fleet, good, nan=False)
                _progress("good rollout done")
                res["rollout_nan"] = rollout(fleet, str(int(good) + 1), nan=True)
                _progress("NaN rollout done")
                template = json.loads(fleet.store.get_bytes(report_key(fleet.agents[0].cfg.device_id)))
                template = {
                    k: v
                    for k, v in template.items()
                    if k not in ("signature", "schema", "seq", "reported_at")
                }
                res["controller_cost"] = []
                for n in reports:
                    res["controller_cost"].append(
                        controller_cost(work, n, proxy, moto.endpoint, fleet.keys, template)
                    )
                    _progress(f"controller cost at {n} reports done")
    finally:
        proxy.close()
        moto.kill()
    res["total_s"] = time.perf_counter() - t0
    return res


def _progress(msg: str) -> None:
    print(f"[fleet-bench] {msg}", file=sys.stderr, flush=True)


def _cpu() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


if __name__ == "__main__":
    sys.exit(main())
