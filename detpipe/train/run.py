"""Train one model in this process: alone, or as one rank of a torchrun job.

The same function serves ``detpipe train --launcher local``, every torchrun worker
(:mod:`detpipe.train.worker`) and every PyTorchJob pod. It reads its place in the job from
torchrun's environment, so it never needs to be told::

    from detpipe.train.config import build_config
    from detpipe.train.run import train

    summary = train(build_config("runs/demo/yolo/dataset.yaml", "yolo12n.yaml", "runs/demo/train",
                                 flags={"epochs": 1, "imgsz": 128, "batch": 8}))

Steps: make ultralytics offline; resolve the model (no hub) and where to resume from;
bring up the process group; download remote weights/checkpoints (rank 0 first, then one
process per node); train with :class:`~detpipe.train.ddp.DetpipeDetectionTrainer`; gather
per-rank statistics; on global rank 0 write ``train_summary.json`` and upload the run to
its mirror when ``--resume`` names one.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import yaml

from detpipe.errors import InvalidInput, StoreError
from detpipe.io import discard_partial_writes, read_json, write_json
from detpipe.train import checkpoints as ck
from detpipe.train.config import TrainConfig
from detpipe.train.dist import DistEnv, process_group, writers_first
from detpipe.train.models import ModelSource, is_store_uri, resolve_model
from detpipe.train.summary import build_summary, dataset_hash, read_results, trim_results

log = logging.getLogger(__name__)

INPUTS_DIR = ".inputs"  # remote weights are downloaded here, inside the run directory


def check_data(data: str | Path) -> Path:
    """Check that ``data`` is a readable dataset YAML with train/val splits and classes.

    Raises:
        InvalidInput: a missing file, bad YAML, or missing keys.
    """
    path = Path(data)
    if not path.is_file():
        raise InvalidInput(f"--data {data}: no such file")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raise InvalidInput(f"--data {data}: not a readable YAML file") from None
    if not isinstance(loaded, dict):
        raise InvalidInput(f"--data {data}: expected a mapping with train, val and names")
    missing = [k for k in ("train", "val") if not loaded.get(k)]
    if not loaded.get("names") and not loaded.get("nc"):
        missing.append("names")
    if missing:
        raise InvalidInput(f"--data {data}: missing {', '.join(missing)}")
    return path


def train(cfg: TrainConfig, env: DistEnv | None = None) -> dict[str, Any] | None:
    """Run the training ``cfg`` describes in this process.

    Args:
        cfg: the run.
        env: this process's place in a torchrun job; read from the environment when ``None``.

    Returns:
        The summary (also written to ``OUT/train_summary.json``) on global rank 0, ``None``
        on the other ranks.

    Raises:
        InvalidInput: bad data, model, device or resume checkpoint.
        StoreError: the artifact store failed.
    """
    from detpipe.ultralytics_env import configure_offline

    env = env or DistEnv.from_env()
    configure_offline(verbose=env.is_main and log.isEnabledFor(logging.INFO))
    out = Path(cfg.out).absolute()
    check_data(cfg.data)
    source = resolve_model(cfg.model)
    device = env.device(cfg.device)
    plan = ck.plan_resume(cfg.resume, out)
    if cfg.resume and env.is_main:  # a killed run may have died inside an atomic checkpoint write
        for stale in discard_partial_writes(out / "weights"):
            log.info("removed %s, a partial write of the interrupted run", stale.name)
    if plan.mirror is not None and plan.mirror.finished():
        return _already_finished(plan.mirror, out, env)
    with process_group(env, device):
        return _train_in_group(cfg, env, source, device, plan, out)


def _already_finished(mirror: ck.RunMirror, out: Path, env: DistEnv) -> dict[str, Any] | None:
    log.warning("%s already holds a finished run: fetching its outputs instead of training", mirror.uri)
    if not env.is_main:
        return None
    mirror.download(out, [*ck.OUTPUTS, ck.SUMMARY], missing_ok=True)
    return read_json(out / ck.SUMMARY)


def _train_in_group(
    cfg: TrainConfig, env: DistEnv, source: ModelSource, device: str, plan: ck.ResumePlan, out: Path
) -> dict[str, Any] | None:
    model_path = (
        _fetch_weights(source.ultralytics_model, out, env) if source.remote else source.ultralytics_model
    )
    if cfg.pretrained and not is_store_uri(cfg.pretrained) and not Path(cfg.pretrained).is_file():
        raise InvalidInput(f"--pretrained {cfg.pretrained}: no such file (local path or s3:// URI)")
    pretrained = _fetch_weights(cfg.pretrained, out, env) if cfg.pretrained else False
    checkpoint = plan.checkpoint
    if checkpoint is not None:
        with writers_first(env):
            # The mirror is the truth: one download per node (a restarted container may hold
            # an older local copy); results.csv matters on rank 0 only, the one writer.
            if plan.mirror is not None and env.is_node_main:
                plan.mirror.download(
                    out, [ck.LAST, ck.RESULTS] if env.is_main else [ck.LAST], missing_ok=True
                )
            done = ck.checkpoint_epoch(checkpoint)
            if env.is_main:
                trim_results(out / ck.RESULTS, done)
        log.info("resuming from %s (%d epochs done)", checkpoint, done)

    overrides = {
        **cfg.ultralytics_overrides(),
        "model": str(model_path),
        "pretrained": str(pretrained) if pretrained else source.kind == "weights",
        "device": device,
        "save_dir": str(out),
        "exist_ok": True,
        "resume": str(checkpoint) if checkpoint else False,
        "verbose": env.is_main,
    }
    if device == "cpu":
        overrides["amp"] = False  # AMP is CUDA-only; ultralytics' check would disagree across ranks
    trainer = _build_trainer(overrides, env, cfg)
    if plan.mirror is not None and env.is_main:
        trainer.add_callback("on_model_save", _mirror_callback(plan.mirror, out))

    started = time.perf_counter()
    trainer.train()
    from detpipe.train.ddp import gather_stats

    ranks = gather_stats(env, trainer.finish_stats())
    if not env.is_main:
        return None
    log.info("training finished in %.1f s", time.perf_counter() - started)
    summary = _summarize(trainer, source, cfg, ranks, out, plan.mirror)
    write_json(out / ck.SUMMARY, summary)
    if plan.mirror is not None:
        plan.mirror.upload(out, [*ck.OUTPUTS, ck.SUMMARY])
    return summary


def _fetch_weights(ref: str, out: Path, env: DistEnv) -> Path:
    """A local path for weights named by path or store URI (downloaded once per filesystem)."""
    if not is_store_uri(ref):
        return Path(ref)
    from detpipe.store import open_store

    parent, _, name = ref.rstrip("/").rpartition("/")
    dest = out / INPUTS_DIR / name
    with writers_first(env):
        if not dest.is_file():
            open_store(parent).get_file(name, dest)
    return dest


def _build_trainer(overrides: dict[str, Any], env: DistEnv, cfg: TrainConfig) -> Any:
    from detpipe.train.ddp import DetpipeDetectionTrainer

    try:
        return DetpipeDetectionTrainer(overrides=overrides, dist_env=env)
    except RuntimeError as e:
        if str(e).startswith("Dataset"):  # ultralytics' get_dataset(): the data YAML does not check out
            reason = str(e).splitlines()[0].split("❌")[-1].strip()
            raise InvalidInput(f"--data {cfg.data}: {reason}") from None
        raise
    except FileNotFoundError as e:
        raise InvalidInput(f"{e}") from None


def _mirror_callback(mirror: ck.RunMirror, out: Path) -> Any:
    """Upload results.csv, then last.pt (and best.pt when it changed) after every save."""

    def upload(trainer: Any) -> None:
        keys = [ck.RESULTS, ck.LAST]
        if trainer.best_fitness == trainer.fitness:
            keys.append(ck.BEST)
        try:
            mirror.upload(out, keys)
        except StoreError as e:  # the store already retried; the next epoch uploads again
            log.warning("checkpoint upload to %s failed, training goes on: %s", mirror.uri, e)

    return upload


def _summarize(
    trainer: Any, source: ModelSource, cfg: TrainConfig, ranks: list[dict[str, Any]], out: Path, mirror: Any
) -> dict[str, Any]:
    from ultralytics.utils.torch_utils import unwrap_model

    dataset = trainer.train_loader.dataset
    yaml_file = getattr(unwrap_model(trainer.model), "yaml", {}).get("yaml_file")
    weights = {
        "best": ck.BEST if (out / ck.BEST).is_file() else None,
        "last": ck.LAST if (out / ck.LAST).is_file() else None,
    }
    return build_summary(
        model=source.name or yaml_file or source.text,
        data=cfg.data,
        seed=trainer.args.seed,
        rows=read_results(out / ck.RESULTS),
        config=vars(trainer.args),
        dataset_sha256=dataset_hash(dataset.im_files, dataset.label_files, trainer.data.get("path", "/")),
        ranks=ranks,
        weights=weights,
        mirror=mirror.uri if mirror is not None else None,
    )
