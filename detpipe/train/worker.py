"""The torchrun entry point: one process of a training job (takes ``detpipe train``'s run flags).

torchrun starts it once per GPU on every node and sets WORLD_SIZE/RANK/LOCAL_RANK; the
process trains its shard and, on global rank 0, writes the outputs::

    # one machine, 4 GPUs (what `detpipe train --launcher torchrun` runs)
    torchrun --standalone --nproc-per-node 4 -m detpipe.train.worker \\
        --data /data/coco/train2017_5_p.yaml --model yolo12n.yaml --out runs/yolo12n-5p --batch 256

    # two machines: the same command on each, --node-rank 0 on the one at $MASTER
    torchrun --nnodes 2 --node-rank 0 --master-addr $MASTER --master-port 29500 \\
        --nproc-per-node 4 -m detpipe.train.worker --data ... --model yolo12n.yaml --out ...

Exit status: 0 on success, the :mod:`detpipe.errors` code with a one-line reason otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from detpipe.errors import DetpipeError
from detpipe.train.config import add_arguments, config_from_args
from detpipe.train.dist import DistEnv


def get_args_parser() -> argparse.ArgumentParser:
    """The worker's parser: the run and hyperparameter flags of ``detpipe train``."""
    parser = argparse.ArgumentParser(
        prog="python -m detpipe.train.worker",
        description="One process of a torchrun training job (see 'detpipe train --help').",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags, train this process's part, return the exit status."""
    args = get_args_parser().parse_args(argv)
    try:
        env = DistEnv.from_env()
    except DetpipeError as e:
        print(f"detpipe train worker: error: {e}", file=sys.stderr)
        return e.exit_code
    level = logging.DEBUG if args.verbose else logging.INFO if env.is_main else logging.WARNING
    logging.basicConfig(level=level, format=f"%(levelname)s [rank {env.rank}] %(name)s: %(message)s")
    try:
        from detpipe.train.run import train

        train(config_from_args(args), env)
    except DetpipeError as e:
        print(f"detpipe train [rank {env.rank}]: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
