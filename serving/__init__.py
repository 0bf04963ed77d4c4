"""The detpipe inference server: FastAPI over onnxruntime and TensorRT, with Prometheus metrics.

Three layers, as in KServe: transport (:mod:`detpipe.serving.app`, routes and error mapping) ->
data plane (:mod:`detpipe.serving.dataplane`, decode, dynamic batching, NMS; no HTTP) -> the model
(:mod:`detpipe.serving.model`, a file or a verified release from the store, run by
:mod:`detpipe.runtime`'s predictors). Installed as ``detpipe.serving``; run it with
``detpipe serve --model URI``.
"""
