"""Container image names: the one place they are spelled (components, PyTorchJobs, k8s docs).

Tags follow the package version; build them with ``make images`` (docker/).
"""

from detpipe import __version__

REGISTRY = "ghcr.io/detpipe"
TRAIN_IMAGE = f"{REGISTRY}/detpipe-train:{__version__}"
"""docker/Dockerfile.train: every pipeline step and PyTorchJob replica."""
SERVE_IMAGE = f"{REGISTRY}/detpipe-serve:{__version__}"
"""docker/Dockerfile.serve: the inference server (k8s/serving)."""
SERVE_GPU_IMAGE = f"{REGISTRY}/detpipe-serve-gpu:{__version__}"
"""docker/Dockerfile.serve-gpu: the inference server on onnxruntime-gpu / TensorRT (k8s/serving/gpu)."""
JETSON_IMAGE = f"{REGISTRY}/detpipe-jetson:{__version__}"
"""docker/Dockerfile.jetson: engine builds and benchmarks on Jetson nodes."""
