"""Training: ultralytics YOLO detectors from scratch, alone or as a torchrun/PyTorchJob job.

Modules: ``config`` (TrainConfig, flags, hyperparameter YAML), ``models`` (config names and
weights, resolved offline), ``dist`` (torchrun environment, process group), ``ddp`` (the
DetectionTrainer subclass that makes multi-node DDP correct), ``checkpoints`` (resume and
the run's mirror in the store), ``summary`` (train_summary.json), ``run`` (train in this
process), ``launch`` (local / torchrun launchers), ``worker`` (the torchrun entry point),
``pytorchjob`` (render/submit) and ``jobwatch`` (follow a PyTorchJob to its end)::

    detpipe train --data runs/demo/yolo/dataset.yaml --model yolo12n.yaml --out runs/demo/train
"""
