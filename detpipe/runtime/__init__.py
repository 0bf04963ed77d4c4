"""Running a detector: the one layer that serving, the edge agent, bench, export and mine load models through.

- :mod:`detpipe.runtime.image`: decode (:mod:`~detpipe.runtime.image_header` checks the size
  first), letterbox, the NCHW float32 model input, static-batch padding;
- :mod:`detpipe.runtime.nms`: raw YOLO output -> :class:`~detpipe.runtime.nms.Detections`
  (confidence filter, class-aware NMS, boxes in the image's pixels);
- :mod:`detpipe.runtime.predictors`: the ``Predictor`` interface, onnxruntime and the PyTorch
  reference; :mod:`detpipe.runtime.tensorrt`: TensorRT engines (sidecar-checked);
- :mod:`detpipe.runtime.backends`: which backend runs which file, loading a predictor for it;
- :mod:`detpipe.runtime.warmup`: the one smoke test a loaded model passes before it serves
  (the server's warm-up, the edge health check) and loading with it.

Importing this package imports nothing heavy: onnxruntime, onnx, cv2, torch and TensorRT are
imported inside the functions that use them.
"""
