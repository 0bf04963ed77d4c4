"""The peer of ``benchmarks/serve.py --modes kserve``: KServe's python ModelServer on the same ONNX file.

Run inside the benchmark's own virtualenv (``kserve`` is no dependency of detpipe;
``benchmarks/serve.py`` makes the environment with :data:`REQUIREMENTS` when it is missing)::

    runs/bench-venvs/kserve/bin/python benchmarks/kserve_peer.py --model model.onnx --port 8091 --threads 2

It serves ``model`` over the Open Inference Protocol (REST v2, binary tensor data both ways,
as tritonclient sends and asks by default): ``images`` FP32 ``[n, 3, h, w]`` in, the raw
``output0`` out, onnxruntime with the same session options as detpipe's
:func:`detpipe.runtime.predictors.OnnxPredictor` (all graph optimizations, ``--threads``
intra-op threads). One uvicorn worker, no gRPC, as ``detpipe serve`` runs.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

REQUIREMENTS = ("kserve==0.21.0", "onnxruntime==1.23.2")
"""What the peer's virtualenv holds (onnxruntime: the version detpipe pins)."""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="ONNX file")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int, default=2)
    args, _ = p.parse_known_args()
    sys.argv = sys.argv[:1]  # kserve.model_server parses sys.argv when imported: give it none of ours

    import numpy as np
    import onnxruntime as ort
    from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

    class OnnxModel(Model):
        """One ONNX file on onnxruntime's CPU provider; predict answers with the raw output."""

        def __init__(self, name: str, path: str, threads: int) -> None:
            super().__init__(name)
            self.path, self.threads = path, threads

        def load(self) -> bool:
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.intra_op_num_threads = self.threads
            self.session = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
            self.input = self.session.get_inputs()[0].name
            self.output = self.session.get_outputs()[0].name
            self.ready = True
            return True

        async def predict(self, payload: InferRequest, headers: Any = None, response_headers: Any = None):
            x = np.ascontiguousarray(payload.inputs[0].as_numpy(), dtype=np.float32)
            (y,) = self.session.run([self.output], {self.input: x})
            out = InferOutput(name=self.output, shape=list(y.shape), datatype="FP32")
            out.set_data_from_numpy(y, binary_data=True)
            # its REST model needs a string id: a request without one gets a fresh one, as Triton does
            rid = payload.id or uuid.uuid4().hex
            return InferResponse(model_name=self.name, infer_outputs=[out], response_id=rid)

    model = OnnxModel("model", args.model, args.threads)
    model.load()
    ModelServer(http_port=args.port, workers=1, enable_grpc=False, enable_docs_url=False).start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
