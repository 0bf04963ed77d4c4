"""Export: ONNX, ONNX INT8 (QDQ), TensorRT FP16/INT8 engines (with their sidecars) and the
accuracy gate; the exported files run through :mod:`detpipe.runtime`. ``detpipe export`` runs
:func:`detpipe.export.stage.run_export`.
"""
