"""Canary rollouts of the inference server on a cluster (``detpipe deploy``).

- :mod:`~detpipe.deploy.config`: :class:`CanaryConfig`, what a rollout is made of;
- :mod:`~detpipe.deploy.queries`: the PromQL checks an analysis runs, with their limits;
- :mod:`~detpipe.deploy.objects`: one function per Kubernetes object (plain dicts);
- :mod:`~detpipe.deploy.render`: the objects of a canary, composed, and as YAML;
- :mod:`~detpipe.deploy.cluster`: server-side apply and the patches of promote/rollback/status.

::

    cfg = CanaryConfig(model_uri="s3://detpipe/models/yolov8n-coco/0.2.0")
    print(to_yaml(render(cfg)))          # what `detpipe deploy canary --dry-run` prints
"""
