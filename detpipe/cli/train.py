"""``detpipe train``: train a YOLO detector here, with torchrun, or as a Kubeflow cluster job.

Parses the flags into a :class:`~detpipe.train.config.TrainConfig`, checks the inputs before
anything starts (exit 2 with one line), and hands over to a launcher
(:mod:`detpipe.train.launch`, or :mod:`detpipe.train.cluster` for a PyTorchJob or a Kubeflow
Trainer v2 TrainJob); prints the run's ``train_summary.json`` on stdout::

    detpipe train --data runs/demo/yolo/dataset.yaml --model yolo12n.yaml --out runs/demo/train
    detpipe train ... --launcher torchrun --nproc-per-node 4
    detpipe train ... --launcher pytorchjob --nnodes 4 --nproc-per-node 4 --resume s3://detpipe/train/x
    detpipe train ... --launcher trainjob --nnodes 4 --nproc-per-node 4 --resume s3://detpipe/train/x
    detpipe train ... --launcher trainjob ... --queue detpipe-gpu     # wait in a Kueue LocalQueue
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from typing import Any

from detpipe.cli.options import non_negative_int, positive_int
from detpipe.errors import InvalidInput
from detpipe.train.config import TrainConfig, add_arguments, config_from_args

log = logging.getLogger(__name__)

EXAMPLES = """\
examples:
  # from scratch on this machine (CPU or one GPU)
  detpipe train --data runs/demo/yolo/dataset.yaml --model yolo12n.yaml --out runs/demo/train \\
      --epochs 1 --imgsz 128 --batch 8
  # 4 GPUs here; --batch is global (64 per GPU)
  detpipe train --data coco.yaml --model yolo12s.yaml --out runs/y12s --batch 256 \\
      --launcher torchrun --nproc-per-node 4
  # node 0 of a 2-machine job (run the same with --node-rank 1 on the other machine)
  detpipe train ... --launcher torchrun --nproc-per-node 4 --nnodes 2 --node-rank 0 --master-addr 10.0.0.1
  # Kubeflow PyTorchJob: 4 pods x 4 GPUs, checkpoints mirrored to MinIO (print it with --dry-run)
  detpipe train --data /data/coco/train2017_5_p.yaml --model yolo12n.yaml --out runs/y12n-5p \\
      --launcher pytorchjob --nnodes 4 --nproc-per-node 4 --resume s3://detpipe/train/y12n-5p
  # the same as a Kubeflow Trainer v2 TrainJob (runtime torch-distributed), for new clusters
  detpipe train ... --launcher trainjob --nnodes 4 --nproc-per-node 4 --resume s3://detpipe/train/y12n-5p
  # on a shared cluster: queued in the Kueue LocalQueue detpipe-gpu (k8s/kueue), created suspended;
  # --timeout counts from admission, --queue-timeout bounds the wait
  detpipe train ... --launcher trainjob --nnodes 4 --nproc-per-node 4 --resume s3://detpipe/train/y12n-5p \\
      --queue detpipe-gpu --queue-timeout 86400
  # the same command again (a lost terminal, a failed job) follows the run's live job, or starts the
  # next attempt (<job>-a2, resuming from --resume) once the last one failed
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train a YOLO detector (local, torchrun, a Kubeflow PyTorchJob or TrainJob)",
        description=(
            "Train an ultralytics YOLO detector (v8, v9, v10, 11, 12 at any scale) from scratch or\n"
            "from local/S3 weights, never downloading from a hub. Writes OUT/weights/{best,last}.pt,\n"
            "OUT/results.csv and OUT/train_summary.json (also printed on stdout).\n\n"
            "--batch is the GLOBAL batch: each of WORLD_SIZE processes trains batch/WORLD_SIZE\n"
            "images per step. Hyperparameters: ultralytics defaults < --config HYP_YAML <\n"
            "--set KEY=VALUE < flags."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    run = parser.add_argument_group("launch")
    run.add_argument(
        "--launcher",
        choices=("local", "torchrun", "pytorchjob", "trainjob"),
        default="local",
        help="local: in this process; torchrun: one process per GPU on this machine (or one node of a "
        "multi-node job); pytorchjob: submit a Training Operator v1 PyTorchJob and follow it; trainjob: "
        "the same as a Kubeflow Trainer v2 TrainJob (default: local)",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would run (config, command or YAML); the data YAML is not read",
    )
    run.add_argument("--overwrite", action="store_true", help="replace a previous run in OUT")
    run.add_argument("--nproc-per-node", type=positive_int, default=None, help="processes (GPUs) per node")
    run.add_argument(
        "--nnodes", type=positive_int, default=1, help="nodes (torchrun) or pods (pytorchjob, trainjob)"
    )
    run.add_argument("--node-rank", type=non_negative_int, default=0, help="this node's rank (torchrun)")
    run.add_argument("--master-addr", default=None, help="address of node 0 (torchrun, --nnodes > 1)")
    run.add_argument(
        "--master-port", type=positive_int, default=29500, help="rendezvous port (default: 29500)"
    )
    job = parser.add_argument_group("cluster job (--launcher pytorchjob or trainjob)")
    job.add_argument("--image", default=None, help="training image (default: detpipe.images.TRAIN_IMAGE)")
    job.add_argument("--namespace", default="detpipe", help="Kubernetes namespace (default: detpipe)")
    job.add_argument(
        "--job-name",
        default=None,
        help="the run's job name (default: derived from model and flags); a job of this run that is "
        "still live is followed, not created again; after a failed one the next attempt is <name>-a2, ...",
    )
    job.add_argument("--shm-size", default="16Gi", help="/dev/shm size per pod (default: 16Gi)")
    job.add_argument("--cpu", default="8", help="CPU request per pod (default: 8)")
    job.add_argument("--memory", default="64Gi", help="memory request/limit per pod (default: 64Gi)")
    job.add_argument(
        "--node-selector",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="pod node selector (repeatable)",
    )
    job.add_argument(
        "--toleration",
        action="append",
        default=[],
        metavar="KEY[=VALUE]:EFFECT",
        help="pod toleration (repeatable; default: nvidia.com/gpu:NoSchedule)",
    )
    job.add_argument(
        "--data-pvc", default="detpipe-datasets", help="PVC with the datasets, mounted read-only"
    )
    job.add_argument(
        "--data-mount", default="/data", help="where the dataset PVC is mounted (default: /data)"
    )
    job.add_argument(
        "--timeout",
        type=positive_int,
        default=72 * 3600,
        help="seconds the job may run once admitted (time queued does not count) before it is given up "
        "and deleted; also its activeDeadlineSeconds (default: 72h)",
    )
    job.add_argument(
        "--queue",
        default=None,
        metavar="NAME",
        help="Kueue LocalQueue in --namespace: the job is labelled kueue.x-k8s.io/queue-name and created "
        "suspended; it starts when Kueue admits it (default: no queue, it starts at once)",
    )
    job.add_argument(
        "--queue-timeout",
        type=non_negative_int,
        default=24 * 3600,
        metavar="S",
        help="seconds the job may wait, queued or suspended, before it is deleted; each wait (after a "
        "preemption too) afresh; 0: no limit (default: 24h)",
    )
    job.add_argument(
        "--poll", type=positive_int, default=10, help="seconds between status polls (default: 10)"
    )
    parser.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.launcher in ("pytorchjob", "trainjob"):
        return _cluster_job(args, cfg)
    if args.queue:
        raise InvalidInput("--queue needs --launcher pytorchjob or trainjob (Kueue queues cluster jobs)")
    from detpipe.train import launch

    opts = None
    if args.launcher == "torchrun":
        opts = launch.TorchrunOptions(
            nproc_per_node=args.nproc_per_node or launch.default_nproc(cfg),
            nnodes=args.nnodes,
            node_rank=args.node_rank,
            master_addr=args.master_addr,
            master_port=args.master_port,
        )
    launch.check_inputs(cfg, opts.world_size if opts else 1, read_data=not args.dry_run)
    if args.dry_run:
        if opts:
            print(shlex.join(launch.torchrun_command(cfg, opts)))
        else:
            import yaml

            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    launch.prepare_out(cfg, args.overwrite)
    from detpipe.ultralytics_env import configure_offline

    configure_offline(verbose=log.isEnabledFor(logging.INFO))  # before anything imports ultralytics
    launch.check_resumable(cfg)
    summary = launch.run_torchrun(cfg, opts) if opts else launch.run_local(cfg)
    _report(summary, cfg)
    return 0


def _cluster_job(args: argparse.Namespace, cfg: TrainConfig) -> int:
    from detpipe.train import cluster, pytorchjob

    job = pytorchjob.JobConfig.from_args(args, cfg)
    if args.dry_run:
        print(pytorchjob.to_yaml(cluster.render(args.launcher, cfg, job)), end="")
        return 0
    summary = cluster.run_job(
        cfg,
        job,
        args.launcher,
        timeout_s=args.timeout,
        queue_timeout_s=args.queue_timeout or None,
        poll_s=args.poll,
    )
    _report(summary, cfg)
    return 0


def _report(summary: dict[str, Any] | None, cfg: TrainConfig) -> None:
    if summary is None:  # a torchrun node other than the one holding rank 0
        print(
            f"this node's part of the job finished; outputs are written by rank 0 ({cfg.out})",
            file=sys.stderr,
        )
        return
    print(json.dumps(summary, indent=2))
    best = summary.get("best_map5095")
    print(
        f"{summary['model']}: best mAP50-95 {best if best is not None else 'n/a'} at epoch "
        f"{summary.get('best_epoch')} of {summary.get('last_epoch')}; {cfg.out}/train_summary.json",
        file=sys.stderr,
    )
