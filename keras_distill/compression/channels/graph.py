"""The layer graph of a functional or Sequential model, read from its public config.

`get_config()` lists every layer with the tensors it was called on, in
topological order, on both Keras generations (their node formats differ and
are both read here). Only the calls inside the model are listed, so a layer
reused elsewhere is still seen once.
"""

import dataclasses

from keras_distill._keras import keras


@dataclasses.dataclass
class LayerCall:
    """One layer of the model and the layers whose outputs it was called on."""

    name: str
    class_name: str
    layer: object
    entry: dict
    inputs: list


@dataclasses.dataclass
class Graph:
    """The model's layer calls in topological order, its inputs and outputs."""

    calls: list
    inputs: list
    outputs: list
    sequential: bool
    config: dict


def read_graph(model):
    """The `Graph` of a built functional or Sequential `model`.

    Raises:
        ValueError: For a subclassed model, a nested model or a layer called
            more than once (shared), naming it.
    """
    config = model.get_config()
    sequential = isinstance(model, keras.Sequential)
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ValueError(
            "`model` must be a functional or Sequential keras.Model: the channel pruner reads "
            "its layer graph from `get_config()`, which a subclassed model does not describe. "
            f"Received: model={model.name!r} of class {type(model).__name__}"
        )
    if sequential:
        return _sequential_graph(model, config)
    return _functional_graph(model, config)


def _sequential_graph(model, config):
    calls, previous, inputs = [], None, []
    for entry in config["layers"]:
        name = entry["config"]["name"]
        if entry["class_name"] == "InputLayer":
            inputs.append(name)
            calls.append(LayerCall(name, "InputLayer", None, entry, []))
            previous = name
            continue
        layer = model.get_layer(name)
        if previous is None:
            # A Sequential model built without an Input layer: its input is implicit.
            previous = "__input__"
            inputs.append(previous)
            calls.append(LayerCall(previous, "InputLayer", None, None, []))
        calls.append(LayerCall(name, entry["class_name"], layer, entry, [previous]))
        previous = name
    return Graph(calls, inputs, [previous], True, config)


def _functional_graph(model, config):
    calls = []
    for entry in config["layers"]:
        name = entry.get("name") or entry["config"]["name"]
        nodes = entry.get("inbound_nodes") or []
        if len(nodes) > 1:
            raise ValueError(
                f"The channel pruner cannot follow layer {name!r} ({entry['class_name']}): it is "
                f"called {len(nodes)} times in the model (a shared layer), and its channels "
                "would have to be pruned alike on every call. Give each call its own layer. "
                f"Received: model={model.name!r}"
            )
        inputs = [_history(tensor) for tensor in _tensors(nodes[0])] if nodes else []
        layer = None if entry["class_name"] == "InputLayer" else model.get_layer(name)
        calls.append(LayerCall(name, entry["class_name"], layer, entry, inputs))
    return Graph(
        calls,
        [item[0] for item in _endpoints(config["input_layers"])],
        [item[0] for item in _endpoints(config["output_layers"])],
        False,
        config,
    )


def _endpoints(items):
    """`[[name, node, tensor], ...]` from either `[name, node, tensor]` or a list of them."""
    if items and isinstance(items[0], str):
        return [items]
    return list(items)


def _history(tensor):
    name, _, tensor_index = tensor
    if tensor_index != 0:
        raise ValueError(
            f"The channel pruner follows single-output layers only; layer {name!r} has several "
            f"outputs. Received: output index {tensor_index} of {name!r}"
        )
    return name


def _tensors(node):
    """`[(layer_name, node_index, tensor_index), ...]` of the tensors a call received.

    Keras 3 stores `{"args": [...], "kwargs": {...}}` with `__keras_tensor__`
    entries; tf_keras stores `[[layer_name, node_index, tensor_index, kwargs], ...]`.
    """
    found = []
    if isinstance(node, dict) and "args" in node:
        _collect(node.get("args"), found)
        _collect(node.get("kwargs"), found)
        return found
    for item in node:
        if isinstance(item, (list, tuple)) and len(item) >= 3 and isinstance(item[0], str):
            found.append((item[0], item[1], item[2]))
    return found


def _collect(value, found):
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            found.append(tuple(value["config"]["keras_history"]))
            return
        for item in value.values():
            _collect(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect(item, found)
