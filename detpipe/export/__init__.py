"""Export: ONNX, ONNX INT8 (QDQ), TensorRT FP16/INT8 engines, the accuracy gate, and the
predictors (pre/post-processing over each runtime) that evaluation, the benchmark and the
server share. ``detpipe export`` runs :func:`detpipe.export.stage.run_export`.
"""
