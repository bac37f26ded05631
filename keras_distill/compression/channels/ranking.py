"""Which channels of each space to keep: scores (filter L1 norm or BN scale) and counts."""

import math

import numpy as np

CRITERIA = ("l1", "bn")


def kept_count(size, fraction, round_to):
    """Channels kept of `size`: `fraction * size` rounded to the nearest multiple of `round_to`.

    At least `round_to` and at most `size`; a space of `round_to` channels or
    fewer is kept whole.
    """
    if size <= round_to:
        return size
    count = int(math.floor(fraction * size / round_to + 0.5)) * round_to
    return min(max(count, round_to), size)


def weight(layer, short_name):
    """The value of `layer`'s weight named `short_name` (e.g. `"kernel"`), or `None`."""
    for variable in layer.weights:
        if short_name_of(variable) == short_name:
            return np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)
    return None


def short_name_of(variable):
    """`"kernel"` from `"dense/kernel"` (Keras 3 path) or `"dense/kernel:0"` (tf_keras name)."""
    name = getattr(variable, "path", None) or variable.name
    return name.split("/")[-1].split(":")[0]


def channel_scores(plan, graph, criterion):
    """`{root space: score per channel}` for every space the pruner may shrink.

    `"l1"`: the sum over the space's producing layers of each filter's L1
    norm, `sum(|W[..., c]|)` (Li et al. 2017). `"bn"`: the sum of `|gamma_c|`
    over the BatchNormalization layers applied to the space (Liu et al.
    2017); spaces without one are ranked by `"l1"`.
    """
    layers = {call.name: call.layer for call in graph.calls}
    scores = {}
    if criterion == "bn":
        for call in graph.calls:
            if call.class_name != "BatchNormalization" or call.name not in plan.inputs:
                continue
            gamma = weight(call.layer, "gamma")
            if gamma is None:
                continue
            roots, channels = plan.channel_map(plan.inputs[call.name][0])
            for root in np.unique(roots):
                score = scores.setdefault(int(root), np.zeros(plan.spaces[root].size))
                np.add.at(score, channels[roots == root], np.abs(gamma[roots == root]))
    for root in plan.roots():
        space = plan.spaces[root]
        if root in scores or space.frozen or not space.producers:
            continue
        score = np.zeros(space.size)
        for name in space.producers:
            kernel = weight(layers[name], "pointwise_kernel")
            kernel = weight(layers[name], "kernel") if kernel is None else kernel
            score += np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
        scores[root] = score
    return scores


def choose_channels(plan, graph, fraction, round_to, criterion):
    """Fills `plan.kept` with the sorted channel indices kept in each prunable space."""
    scores = channel_scores(plan, graph, criterion)
    for root in plan.roots():
        space = plan.spaces[root]
        if space.frozen or not space.producers:
            continue
        count = kept_count(space.size, fraction, round_to)
        order = np.argsort(-scores[root], kind="stable")
        plan.kept[root] = np.sort(order[:count])
