"""Passes over the IR. Importing this package registers them all with the manager."""
from . import channel_reuse, fixed_point, fold_constants, fold_thresholds  # noqa: F401
from .manager import PassError, parse_pipeline, run_pipeline  # noqa: F401

DEFAULT_PIPELINE = "quantize-inputs,fold-constants,fold-thresholds,fold-constants,fold-fixed-point"
