"""``detpipe recommend``: the deployment guide's decision rules as a command.

From a platform, a target FPS, the sensor, the number of classes and images (or a COCO file to
measure them), it picks the model scale, input size, epochs, patience, lr0, augmentation preset
and deployment precision, and says how much data the task needs.

Modules: :mod:`~detpipe.recommend.platforms` (targets, published model figures, the FPS
estimate), :mod:`~detpipe.recommend.rules` (the rules and their constants),
:mod:`~detpipe.recommend.dataset` (measuring an annotation file), :mod:`~detpipe.recommend.stage`
(config, recommendation, outputs).
"""
