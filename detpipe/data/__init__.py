"""Dataset tooling: COCO loading/validation, synthetic data, COCO -> YOLO conversion."""
