"""predict(): network + hardware + TrainingSetup -> Prediction, and the assembly of its rows and breakdown."""

from .assemble import assumptions, bottleneck_text, layer_rows, prediction_from_evaluation
from .setup import DEFAULT_BATCH, DEFAULTS, SETUP_FIELDS, TrainingSetup, make_setup
from .api import predict

__all__ = ["predict", "TrainingSetup", "make_setup", "SETUP_FIELDS", "DEFAULTS", "DEFAULT_BATCH", "layer_rows",
           "bottleneck_text", "assumptions", "prediction_from_evaluation"]
