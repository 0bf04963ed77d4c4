"""Canary rollouts of the inference server on a cluster (``detpipe deploy``).

- :mod:`~detpipe.deploy.config`: :class:`~detpipe.deploy.config.CanaryConfig`, what a rollout is made of;
- :mod:`~detpipe.deploy.queries`: the PromQL checks an analysis runs, with their limits;
- :mod:`~detpipe.deploy.objects`: one function per Kubernetes object (plain dicts);
- :mod:`~detpipe.deploy.render`: the objects of a canary (and of k8s/serving's variants), and YAML;
- :mod:`~detpipe.deploy.canary`: render and apply (the CLI and the pipeline step);
- :mod:`~detpipe.deploy.cluster`: server-side apply, get and patch over the kubernetes client;
- :mod:`~detpipe.deploy.actions`: promote / rollback / status of a Rollout or a Gateway API canary;
- :mod:`~detpipe.deploy.prometheus`: the checks measured against a Prometheus server;
- :mod:`~detpipe.deploy.kserve`: the KServe target's objects (ServiceAccount, ServingRuntime,
  InferenceService); :mod:`~detpipe.deploy.kserve_actions`: its promote / rollback / status;
  :mod:`~detpipe.deploy.kserve_auto`: ``--auto``, each step judged with the PromQL checks.

::

    cfg = CanaryConfig(model_uri="s3://detpipe/models/yolov8n-coco/0.2.0")
    print(to_yaml(render(cfg)))          # what `detpipe deploy canary --dry-run` prints
"""
