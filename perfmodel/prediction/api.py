"""predict(): one training iteration of a network on a device, node or cluster under a TrainingSetup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError
from ..engine import memo
from ..graph.layer_graph import LayerGraph
from ..parallel.predict import evaluate
from ..result import Prediction
from .assemble import prediction_from_evaluation
from .setup import DEFAULTS, TrainingSetup, check_training_options, make_setup

# options that keep a single-device prediction on one device without a data pipeline (a large-model option set to
# a non-default value gives the `parallel` section, whose "setup" block echoes them for --json)
_SINGLE_DEVICE_FIELDS = ("batch", "dtype", "threads", "optimizer", "memory_format")


def predict(network: str | Path | LayerGraph, hardware: str | Path | Any, setup: TrainingSetup | None = None, *,
            layers: bool = True, **options: Any) -> Prediction:
    """Predict one training iteration of `network` on `hardware` under `setup` (or its fields as keywords).

    `network` and `hardware` are built-in names, file paths, or loaded objects. Every option is a field
    of perfmodel.prediction.TrainingSetup (batch, dtype, threads, optimizer, devices, plan, sync, ...).
    """
    if setup is None:
        setup = make_setup(**options)
    elif options:
        setup = make_setup(**{**setup.model_dump(exclude_unset=True), **options})
    setup.check_modelled()
    graph = memo.network(network)
    hw = memo.hardware(hardware)
    if getattr(hw, "kind", "device") not in ("device", "node", "cluster"):
        raise InputError(f"'{getattr(hw, 'name', hardware)}' is a {hw.kind} profile; predict needs a device, node "
                         f"or cluster")
    check_training_options(hw, dtypes=setup.dtype, threads=setup.threads)
    single = getattr(hw, "kind", "device") == "device" and all(
        getattr(setup, k) == v for k, v in DEFAULTS.items() if k not in _SINGLE_DEVICE_FIELDS)
    return prediction_from_evaluation(evaluate(graph, hw, setup), layers=layers, single=single)
