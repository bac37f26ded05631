"""A new, smaller model from the plan: configs with fewer filters, weights sliced."""

import copy

import numpy as np

from keras_distill._keras import keras
from keras_distill.compression.channels.ranking import short_name_of
from keras_distill.compression.channels.spaces import DEPTHWISE
from keras_distill.compression.channels.spaces import PRODUCERS


def rebuild(model, graph, plan):
    """A new model of `graph` with the channels of `plan.kept`, weights copied and sliced."""
    config = copy.deepcopy(graph.config)
    for entry in config["layers"]:
        entry.pop("build_config", None)
        name = entry["config"]["name"]
        if entry["class_name"] in PRODUCERS and name in plan.output:
            key = "units" if entry["class_name"] == "Dense" else "filters"
            entry["config"][key] = int(len(plan.flat_kept(plan.output[name])))
    if graph.sequential:
        pruned = keras.Sequential.from_config(config)
    else:
        pruned = keras.Model.from_config(config)
    for call in graph.calls:
        if call.layer is None or not call.layer.weights:
            continue
        pruned.get_layer(call.name).set_weights(sliced_weights(call, plan))
    return pruned


def sliced_weights(call, plan):
    """The weights of `call.layer`, with the channels the plan removes taken out."""
    kind = call.class_name
    views = plan.inputs[call.name]
    inputs = plan.flat_kept(views[0]) if len(views) == 1 else None
    outputs = plan.flat_kept(plan.output[call.name])
    full_input = plan.size(views[0]) if len(views) == 1 else None
    values = []
    for variable in call.layer.weights:
        value = np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)
        name = short_name_of(variable)
        if kind in PRODUCERS:
            value = _slice_producer(call, name, value, inputs, outputs)
        elif inputs is None or len(inputs) == full_input:
            pass  # Every input channel kept: the weights stay as they are.
        elif kind in DEPTHWISE and name in ("kernel", "depthwise_kernel"):
            value = value[..., inputs, :]  # (..., channels, depth_multiplier=1)
        elif kind in DEPTHWISE or kind == "BatchNormalization":
            value = value[..., inputs]
        elif kind == "PReLU" and value.shape[-1] == full_input:
            value = value[..., inputs]
        values.append(value)
    return values


def _slice_producer(call, name, value, inputs, outputs):
    if name == "bias":
        return value[outputs]
    if name == "kernel":
        return value[..., inputs, :][..., outputs]
    if name == "depthwise_kernel":
        return value[..., inputs, :]
    if name == "pointwise_kernel":
        multiplier = int(call.entry["config"].get("depth_multiplier", 1))
        rows = (inputs[:, None] * multiplier + np.arange(multiplier)).reshape(-1)
        return value[..., rows, :][..., outputs]
    return value
