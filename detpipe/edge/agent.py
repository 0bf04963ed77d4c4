"""The device agent: one update cycle, and the polling loop around it.

A cycle (:meth:`Agent.run_once`)::

    metadata   TUF refresh against the provisioned root; list the verified targets
    decide     device class, staged rollout (bucket / groups), never down without a signed rollback;
               of the version's targets, the engine for this device's TensorRT and GPU, else
               the ONNX model, else none: outcome ``incompatible`` (see below)
    download   into DIR/downloads/<sha256>.part, resuming what an earlier cycle left
    verify     length + sha256 against the verified TargetFile (the only check that counts)
    install    move into the inactive slot (fsync); build the engine on the device for ONNX + TensorRT
    switch     rename the `current` symlink (atomic)
    health     test inference through DIR/current; tell the server to reload (--reload-url)
    commit     state.json names the slot; status.json to DIR and to the store

What marks a version refused on this device for good (its sha256 in ``state.json``) is a
fault of the artifact: a length or hash mismatch, a
failed health check, or the server rejecting the model itself (HTTP 400); a hash mismatch
of a *resumed* download is fetched again from byte 0 instead (the partial file may be what
went bad). A version without a target for this device (no engine for its TensorRT version
and compute capability, no ONNX model to build from or serve) is no fault of the artifact:
the outcome is ``incompatible``, nothing is downloaded, and the version is looked at again
every cycle (a later publish may add the engine). A device without TensorRT takes the ONNX
model and serves it on the CPU. Those switch
``current`` back (after the switch) and reload the old model. A failure outside the artifact
(the server's reload answering 401/403/404/5xx: a token, a model name, a server problem)
also switches back, but the outcome is ``retrying``: the next cycle tries again, from the
inactive slot that still holds the verified version (no second download). A server that is
not running at all is no failure: it loads ``current`` when it starts. Paths sent to the
server are absolute (``dir`` is resolved in :class:`AgentConfig`). Before the first cycle
:meth:`Slots.recover` finishes or discards what a killed agent left. ``run`` repeats
cycles every ``interval_s``, backing off exponentially (with jitter) while the store is
unreachable::

    agent = Agent(AgentConfig(store="s3://detpipe", device_class="cpu", device_id="cam-17",
                              trust=Path("/etc/detpipe/root.json"), dir=Path("/var/lib/detpipe-edge"),
                              reload_url="http://127.0.0.1:8080/v2/repository/models/yolo/load",
                              reload_token_file=Path("/etc/detpipe/reload-token")))
    result = agent.run_once()        # {"outcome": "installed", "version": "3", "timings_s": {...}}

Crash testing: when ``DETPIPE_EDGE_KILL_AT`` names a step (``download``, ``verified``,
``installed``, ``switched``, ``healthy``, ``committed``) the agent SIGKILLs itself there;
the fault-injection tests use it to kill the agent at each step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import TargetFile

from detpipe.edge.engine import Pick, build_on_device, pick_target
from detpipe.edge.fetcher import OtaFetcher
from detpipe.edge.health import HealthCheckFailed, check_model
from detpipe.edge.inventory import collect as collect_inventory
from detpipe.edge.policy import check_device_id
from detpipe.edge.reload import read_token, request_reload
from detpipe.edge.reports import ensure_device_key, next_seq, report_key, sign_report
from detpipe.edge.rollout import choose
from detpipe.edge.slots import Slots
from detpipe.edge.targets import Release, check_device_class, check_group
from detpipe.edge.trust import StoreUnreachable, TrustedRepo, describe_tuf, load_trust, refresh, store_error
from detpipe.errors import DetpipeError, EngineIncompatible, InvalidInput, ReloadRefused, StoreError
from detpipe.export.sidecar import DeviceInfo, sidecar_path, write_sidecar
from detpipe.io import write_json
from detpipe.store.config import RetryPolicy, S3Config

log = logging.getLogger(__name__)

KILL_ENV = "DETPIPE_EDGE_KILL_AT"
STATUS = "status.json"


@dataclass(frozen=True)
class AgentConfig:
    """``detpipe edge agent`` settings.

    Attributes:
        store: the store URI (``s3://bucket[/prefix]``, a directory, or an https:// mirror).
        device_class: this device's class (targets of other classes are ignored).
        device_id: this device's id (rollout bucket, ``devices/<id>/status.json``).
        trust: the provisioned root metadata (``detpipe edge keygen``'s ``root.json``).
        dir: the agent's state directory (slots, ``current``, downloads, TUF cache); made
            absolute here, since the paths the agent sends the server must not depend on
            either process's working directory.
        interval_s: seconds between cycles.
        reload_url: the local server's model-load endpoint (``POST .../v2/repository/models/NAME/load``).
        reload_token_file: a file holding the server's reload token (``detpipe serve
            --reload-token-file``), sent as ``Authorization: Bearer``; read at each reload
            (a rotated token is picked up), never logged.
        groups: rollout groups this device belongs to.
        backoff: delays while the store is unreachable (exponential, jittered).
        health_threads: CPU threads of the health-check inference.
        device: this device's TensorRT version, GPU and DLA cores, which pick its engine
            (None: detected with ``current_device_info`` the first time a version has
            engines; a device without TensorRT or GPU has none and takes the ONNX model).
        report_store: where the signed status goes (``devices/<id>/status.json``), when
            ``store`` is a read-only HTTP mirror or CDN (metadata and artifacts from there,
            the report to the fleet's bucket); None: ``store`` itself (no report from a mirror).
    """

    store: str
    device_class: str
    device_id: str
    trust: Path
    dir: Path
    interval_s: float = 300.0
    reload_url: str | None = None
    groups: tuple[str, ...] = ()
    backoff: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(attempts=1, base_delay_s=5.0, max_delay_s=600.0)
    )
    health_threads: int = 1
    reload_timeout_s: float = 120.0
    reload_token_file: Path | None = None
    device: DeviceInfo | None = None
    report_store: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dir", self.dir.expanduser().resolve())
        object.__setattr__(self, "trust", self.trust.expanduser().resolve())
        check_device_class(self.device_class)
        for g in self.groups:
            check_group(g)
        check_device_id(self.device_id)  # a store path segment, a MinIO user and a label: one rule
        if self.interval_s <= 0:
            raise InvalidInput(f"interval {self.interval_s}: must be > 0 seconds")
        if self.reload_url is not None and not self.reload_url.startswith(("http://", "https://")):
            raise InvalidInput(f"--reload-url {self.reload_url!r}: an http(s):// URL")
        if self.reload_token_file is not None:
            object.__setattr__(self, "reload_token_file", self.reload_token_file.expanduser().resolve())
            read_token(self.reload_token_file)  # unreadable or empty: bad input now, not at the reload


def _failpoint(step: str) -> None:
    if os.environ.get(KILL_ENV) == step:
        log.warning("%s=%s: killing the agent here (crash test)", KILL_ENV, step)
        os.kill(os.getpid(), signal.SIGKILL)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Agent:
    """One device's agent (see the module docstring).

    Args:
        cfg: the settings.
        fetcher: the transport (built from the environment's S3 settings when None).
        progress: called with the partial file's size while downloading (benchmarks, tests).
    """

    def __init__(
        self,
        cfg: AgentConfig,
        fetcher: OtaFetcher | None = None,
        progress: Callable[[int], None] | None = None,
        s3: S3Config | None = None,
    ) -> None:
        self.cfg = cfg
        self.s3 = s3
        self.fetcher = fetcher or OtaFetcher(s3)
        self.progress = progress
        self.bootstrap = load_trust(cfg.trust)  # a bad trust anchor fails here, before any cycle
        self.slots = Slots(cfg.dir)
        self.signer = ensure_device_key(cfg.dir)  # DIR/device.key (0600) + device.pub, made once
        self.downloads = cfg.dir / "downloads"
        self._recovered = False
        self.delays: list[float] = []  # waits between cycles (the backoff test reads them)
        self._device: tuple[DeviceInfo | None, str] | None = None  # (info, why none), detected once

    # -- one cycle --------------------------------------------------------------------------------

    def run_once(self) -> dict[str, Any]:
        """One update cycle; returns what happened (also written to status.json).

        Verification failures, a failed install and an unreachable store are outcomes
        (``refused``, ``rolled-back``, ``unreachable``), not exceptions.
        """
        if not self._recovered:
            for line in self.slots.recover():
                log.warning("recovery: %s", line)
            self._recovered = True
        timings: dict[str, float] = {}
        result: dict[str, Any] = {"outcome": "error", "timings_s": timings}
        state = self.slots.state()
        try:
            t = time.perf_counter()
            repo = refresh(self.cfg.store, self.bootstrap, self.cfg.dir / "tuf", self.fetcher)
            timings["metadata"] = time.perf_counter() - t
            installed = self.slots.manifest(self.slots.active())
            releases, picks = self._for_this_device(repo.releases, state.get("refused", {}))
            decision = choose(
                releases,
                self.cfg.device_class,
                self.cfg.device_id,
                self.cfg.groups,
                installed=installed.get("version") if installed else None,
                installed_sha256=installed.get("sha256") if installed else None,
                refused=state.get("refused", {}),
            )
            result["reason"] = decision.reason
            if decision.action == "keep" or decision.release is None:
                result["outcome"] = "unchanged"
                if decision.refused:
                    result["error"] = decision.refused  # the status names why, not "not in any rollout"
                self._clean_downloads(keep=None)
            else:
                release = self._target(picks[decision.release.version])
                result.update(self._update(repo, release, state, timings))
        except StoreUnreachable as e:
            result.update(outcome="unreachable", error=str(e))
        except EngineIncompatible as e:  # not the artifact's fault: looked at again next cycle
            version = decision.release.version
            result.update(outcome="incompatible", version=version, error=str(e))
            result["reason"] = (
                f"no target of version {version} fits this device (not refused: checked every cycle)"
            )
            log.warning("version %s not installed: %s", decision.release.version, e)
        except (DetpipeError, tuf_errors.RepositoryError, tuf_errors.DownloadError) as e:
            msg = str(e if isinstance(e, DetpipeError) else store_error(e))
            result.update(outcome="refused", error=msg)
            log.error("update refused: %s", msg)
        self._report(result)
        return result

    def _update(
        self, repo: TrustedRepo, release: Release, state: dict[str, Any], timings: dict[str, float]
    ) -> dict[str, Any]:
        """The steps of an update, one method each (as python-tuf's ngclient splits its refresh):
        fill the inactive slot, switch to it and check it, commit it (or roll back)."""
        previous, slot = self.slots.active(), self.slots.inactive()
        serve_file, fetched, resumed_from = self._fill_slot(repo, release, slot, state, timings)
        _failpoint("installed")
        try:
            self._switch_and_check(slot, serve_file, timings)
        except (HealthCheckFailed, ReloadRefused) as e:
            return self._roll_back(previous, release, state, e)
        _failpoint("healthy")
        self._commit(slot, state)
        log.info("installed %s %s in slot %s (fetched %d bytes)", release.device_class, release.version,
                 slot, fetched)  # fmt: skip
        return {
            "outcome": "rolled-back-to" if release.rollback else "installed",
            "version": release.version,
            "slot": slot,
            "fetched_bytes": fetched,
            "resumed_from": resumed_from,
        }

    def _fill_slot(
        self, repo: TrustedRepo, release: Release, slot: str, state: dict[str, Any],
        timings: dict[str, float],
    ) -> tuple[str, int, int]:  # fmt: skip
        """Put the verified ``release`` into ``slot``: ``(file to serve, bytes fetched, resumed from)``.

        A slot holding it already (hash verified again) is reused: a retry downloads nothing.
        """
        info = repo.target_info(release.path)  # from the verified set, not from our listing
        t = time.perf_counter()
        serve_file = self._verified_slot(slot, release, info)
        if serve_file is not None:
            timings["verify"] = time.perf_counter() - t
            log.info("slot %s holds %s %s already (hash verified): no download", slot, release.path,
                     release.version)  # fmt: skip
            return serve_file, 0, 0
        part, fetched, resumed_from = self._download(repo, release, info, state, timings)
        _failpoint("verified")
        t = time.perf_counter()
        serve_file = self._install(slot, release, part)
        timings["install"] = time.perf_counter() - t
        return serve_file, fetched, resumed_from

    def _switch_and_check(self, slot: str, serve_file: str, timings: dict[str, float]) -> None:
        """Switch ``current`` to ``slot``, health-check the model there, have the server reload it.

        Raises:
            HealthCheckFailed: the model fails its test inference.
            ReloadRefused: the server did not take it.
        """
        self.slots.switch(slot)
        _failpoint("switched")
        t = time.perf_counter()
        check_model(self.slots.current / serve_file, threads=self.cfg.health_threads)
        timings["health"] = time.perf_counter() - t
        if self.cfg.reload_url is not None:
            t = time.perf_counter()
            self._reload(self.slots.current / serve_file)
            timings["reload"] = time.perf_counter() - t

    def _commit(self, slot: str, state: dict[str, Any]) -> None:
        """``state.json`` names ``slot``: from here on a restart keeps it."""
        state["committed"] = slot
        self.slots.save_state(state)
        _failpoint("committed")

    def _verified_slot(self, slot: str, release: Release, info: TargetFile) -> str | None:
        """The file to serve when ``slot`` holds ``release`` already, its hash verified (a retry)."""
        manifest = self.slots.manifest(slot)
        if not manifest or (manifest.get("sha256"), manifest.get("target")) != (release.sha256, release.path):
            return None
        slot_dir = self.slots.slots / slot
        try:
            with (slot_dir / release.file).open("rb") as f:
                info.verify_length_and_hashes(f)
        except (OSError, tuf_errors.LengthOrHashMismatchError):
            return None
        serve_file = str(manifest.get("engine") or release.file)
        return serve_file if (slot_dir / serve_file).is_file() else None

    def _download(
        self, repo: TrustedRepo, release: Release, info: TargetFile, state: dict[str, Any],
        timings: dict[str, float],
    ) -> tuple[Path, int, int]:  # fmt: skip
        """Download (resuming) and verify the artifact: ``(partial file, bytes fetched, resumed from)``."""
        part = self.downloads / f"{release.sha256}.part"
        self._clean_downloads(keep=part)
        t = time.perf_counter()
        resumed_from = part.stat().st_size if part.exists() else 0
        try:
            fetched = self.fetcher.download_to(
                repo.target_url(release), part, info.length, self._progress_with_failpoint
            )
        except tuf_errors.DownloadLengthMismatchError as e:  # the artifact's fault: refused here
            part.unlink(missing_ok=True)
            raise self._refuse(state, release, describe_tuf(e)) from None
        except tuf_errors.DownloadError as e:  # unreachable: the partial file stays, resumed next cycle
            raise store_error(e, f"artifact {release.path}") from None
        timings["download"] = time.perf_counter() - t
        t = time.perf_counter()
        try:
            with part.open("rb") as f:
                info.verify_length_and_hashes(f)
        except tuf_errors.LengthOrHashMismatchError as e:
            part.unlink(missing_ok=True)  # a bad download is never resumed
            if resumed_from:  # the part on disk may be what went bad (a power cut): once more, from 0
                raise StoreError(f"{describe_tuf(e)} (resumed download: retried from the start)") from None
            raise self._refuse(state, release, describe_tuf(e)) from None
        timings["verify"] = time.perf_counter() - t
        return part, fetched, resumed_from

    def _install(self, slot: str, release: Release, part: Path) -> str:
        """Move the verified download into ``slot``; returns the file to serve."""
        manifest = {
            "version": release.version,
            "sha256": release.sha256,
            "file": release.file,
            "format": release.format,
            "device_class": release.device_class,
            "target": release.path,
            "length": release.length,
            "installed_at": _now(),
        }
        files = {release.file: part}
        if release.sidecar is not None:
            side = self.downloads / f"{release.sha256}.sidecar.json"
            write_json(side, release.sidecar)
            files[sidecar_path(Path(release.file)).name] = side
        slot_dir = self.slots.install(slot, files, manifest)
        return self._maybe_build_engine(slot_dir, release, manifest)

    def _refuse(self, state: dict[str, Any], release: Release, reason: str) -> StoreError:
        """Remember ``release`` as refused on this device (a fault of the artifact): never retried."""
        state.setdefault("refused", {})[release.sha256] = reason
        self.slots.save_state(state)
        return StoreError(reason)

    def _progress_with_failpoint(self, size: int) -> None:
        _failpoint("download")  # mid-download: at least one chunk is in the partial file
        if self.progress is not None:
            self.progress(size)

    def _device_info(self) -> tuple[DeviceInfo | None, str]:
        """This device's TensorRT and GPU (``cfg.device``, else detected once), or None and why."""
        if self._device is None:
            if self.cfg.device is not None:
                self._device = (self.cfg.device, "")
            else:
                from detpipe.export.sidecar import current_device_info

                try:
                    self._device = (current_device_info(), "")
                except (DetpipeError, OSError, RuntimeError) as e:  # no TensorRT / GPU here
                    self._device = (None, str(e).split(";")[0])
        return self._device

    def _for_this_device(
        self, releases: list[Release], refused: dict[str, str]
    ) -> tuple[list[Release], dict[str, Pick]]:
        """One target per version of this class for :func:`choose`, and each version's pick.

        Targets refused here are passed over while the version has others (an engine that
        failed its health check leaves the ONNX model). A version with no target for this
        device is represented by one of its targets (the rollout is the version's);
        :meth:`_target` turns its pick into ``incompatible``.
        """
        versions: dict[str, list[Release]] = {}
        for r in releases:
            if r.device_class == self.cfg.device_class:
                versions.setdefault(r.version, []).append(r)
        engines = any(r.format == "engine" for targets in versions.values() for r in targets)
        device, why = self._device_info() if engines else (None, "")
        picks = {}
        for v, targets in versions.items():
            pick = pick_target([r for r in targets if r.sha256 not in refused], device, why)
            picks[v] = pick if pick.release is not None else pick_target(targets, device, why)
        chosen = [p.release or min(versions[v], key=lambda r: r.path) for v, p in picks.items()]
        return chosen, picks

    def _target(self, pick: Pick) -> Release:
        """The target to install, or :class:`EngineIncompatible` (not refused for good)."""
        if pick.release is None:
            raise EngineIncompatible(pick.reason)
        log.info("version %s: %s", pick.release.version, pick.reason)
        return pick.release

    def _maybe_build_engine(self, slot_dir: Path, release: Release, manifest: dict[str, Any]) -> str:
        """For an ONNX target on a TensorRT device: build (or reuse) the engine into the slot."""
        if release.format != "onnx":
            return release.file
        device, _ = self._device_info()
        engine = build_on_device(
            slot_dir / release.file, release.sha256, self.cfg.dir / "engine-cache", device=device
        )
        if engine is None:
            return release.file
        shutil.copy2(engine, slot_dir / "model.engine")
        write_sidecar(slot_dir / "model.engine", json.loads(sidecar_path(engine).read_text()))
        manifest["engine"] = "model.engine"
        write_json(slot_dir / "manifest.json", manifest)
        return "model.engine"

    def _roll_back(
        self, previous: str | None, release: Release, state: dict[str, Any], error: DetpipeError
    ) -> dict[str, Any]:
        """Switch back to ``previous``; refuse ``release`` for good only when the artifact is at fault."""
        reason = str(error)
        retry = isinstance(error, ReloadRefused) and not error.model_rejected
        log.error(
            "version %s %s (%s): switching back", release.version,
            "could not be switched to, retrying next cycle" if retry else "failed its check", reason,
        )  # fmt: skip
        if previous is not None:
            self.slots.switch(previous)
            old = self.slots.manifest(previous) or {}
            try:
                self._reload(self.slots.current / str(old.get("engine") or old.get("file", "")))
            except ReloadRefused as e:
                log.error("reloading the previous model failed too: %s", e)
        else:
            self.slots.current.unlink(missing_ok=True)
        if not retry:
            state.setdefault("refused", {})[release.sha256] = reason
        state["committed"] = previous
        self.slots.save_state(state)
        if retry:
            return {
                "outcome": "retrying",
                "version": release.version,
                "error": reason,
                "reason": f"version {release.version} installed but not switched to; retrying next cycle",
                "slot": previous,
            }
        return {"outcome": "rolled-back", "version": release.version, "error": reason, "slot": previous}

    def _reload(self, model_path: Path) -> None:
        if self.cfg.reload_url is not None:
            cfg = self.cfg
            request_reload(cfg.reload_url, model_path, cfg.reload_token_file, cfg.reload_timeout_s)

    def _clean_downloads(self, keep: Path | None) -> None:
        if not self.downloads.is_dir():
            return
        for p in self.downloads.iterdir():
            if keep is None or not p.name.startswith(keep.name.split(".")[0]):
                p.unlink(missing_ok=True)

    # -- status --------------------------------------------------------------------------------------

    def _report(self, result: dict[str, Any]) -> None:
        """This cycle's status, signed (:mod:`detpipe.edge.reports`), to DIR and the store."""
        active = self.slots.active()
        manifest = self.slots.manifest(active) or {}
        previous = {}
        with contextlib.suppress(OSError, ValueError):
            previous = json.loads((self.cfg.dir / STATUS).read_text())
        fields = {
            "device_id": self.cfg.device_id,
            "device_class": self.cfg.device_class,
            "version": manifest.get("version"),
            "sha256": manifest.get("sha256"),
            "slot": active,
            "outcome": result["outcome"],
            "tried_version": result.get("version"),
            "last_error": result.get("error"),
            "reason": result.get("reason"),
            "last_check": _now(),
            "last_update": _now()
            if result["outcome"] in ("installed", "rolled-back-to")
            else previous.get("last_update"),
            "rolled_back": result["outcome"] == "rolled-back",
            "refused": dict(self.slots.state().get("refused", {})),
            "timings_ms": {k: round(v * 1000) for k, v in result.get("timings_s", {}).items()},
            "inventory": collect_inventory(self.cfg.dir),
        }
        try:
            status = sign_report(fields, self.signer, next_seq(self.cfg.dir))
        except DetpipeError as e:
            log.error("status not reported: %s", e)
            return
        write_json(self.cfg.dir / STATUS, status)
        target = self.cfg.report_store or self.cfg.store
        if target.startswith(("http://", "https://")):
            return  # a read-only mirror, and no --report-store
        try:
            from detpipe.store import open_store

            store = open_store(target, s3=self.s3)
            data = json.dumps(status, indent=2).encode()
            store.put_bytes(report_key(self.cfg.device_id), data, content_type="application/json")
        except DetpipeError as e:
            log.warning("could not report status to the store: %s", e)

    # -- the loop ------------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, max_cycles: int | None = None) -> int:
        """Cycle until ``stop`` is set (SIGTERM) or ``max_cycles`` ran; returns cycles run."""
        stop = stop or threading.Event()
        failures, cycles = 0, 0
        rng = random.Random()
        while not stop.is_set() and (max_cycles is None or cycles < max_cycles):
            result = self.run_once()
            cycles += 1
            if result["outcome"] == "unreachable":
                failures += 1
                delay = self.cfg.backoff.delay(failures, rng)
                log.warning("store unreachable (%d in a row): next try in %.2fs", failures, delay)
            else:
                failures = 0
                delay = self.cfg.interval_s
            self.delays.append(delay)
            stop.wait(delay)
        return cycles
