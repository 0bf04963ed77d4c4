"""The image components are declared with (overridden per build by PipelineSettings.image)."""

from detpipe.images import TRAIN_IMAGE

DEFAULT_IMAGE = TRAIN_IMAGE
