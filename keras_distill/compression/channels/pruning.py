"""Channel (structured) pruning: whole filters and units out, a smaller plain model back."""

import warnings

from keras_distill._checks import check_choice
from keras_distill._checks import check_int
from keras_distill._checks import check_kept_fraction
from keras_distill._checks import check_model
from keras_distill.compression.channels.graph import read_graph
from keras_distill.compression.channels.ranking import CRITERIA
from keras_distill.compression.channels.ranking import choose_channels
from keras_distill.compression.channels.rebuild import rebuild
from keras_distill.compression.channels.spaces import analyze


def prune_channels(model, fraction=0.5, round_to=8, criterion="l1"):
    """A new, smaller model with whole filters and units of `model` removed.

    Unlike `prune` (single weights set to zero, same shapes), this removes
    output channels of `Conv1D/2D/3D`, `SeparableConv1D/2D` and units of
    `Dense`, with everything that goes with them: the matching
    `BatchNormalization` statistics, the per-channel kernels of
    `DepthwiseConv1D/2D` (and `PReLU` slopes) that pass them on, and the
    input rows of the next layers' kernels (through `Flatten`, pooling,
    padding, activations and `Concatenate`). The kernels get smaller, so
    the model (and its `.tflite` file) runs faster and is smaller.

    Channels tied by an `Add` (or another elementwise merge: residual
    blocks) are one group, ranked by their summed score and removed
    together. In each group, of `n` channels the
    `k = clip(round(fraction * n / round_to) * round_to, round_to, n)` with
    the largest score are kept (a group of `round_to` or fewer channels is
    kept whole). Scores:
    - `"l1"`: the filter's L1 norm, `s_c = sum_i |W[..., i, c]|`, summed over
      the layers producing the group (Li et al. 2017);
    - `"bn"`: the BatchNormalization scale, `s_c = sum |gamma_c|` over the
      BatchNormalization layers applied to the group (Liu et al. 2017,
      Network Slimming, where an L1 penalty on gamma during training drives
      unneeded channels to zero); a group without one is ranked by `"l1"`.

    Never pruned: the model's inputs and outputs (the final layer keeps its
    units), and channels that enter a layer mixing them, which is kept whole
    with a `UserWarning` naming it: a `Reshape` changing the last axis,
    `Softmax`, `LayerNormalization`, a grouped convolution, and any other
    built-in layer not listed in `FOLLOWED`. A `Lambda` or custom layer is
    refused (which channels it maps to which is unknown).

    The result is a plain functional or Sequential Keras model of the same
    class and layer names (the input model is not changed); it saves, loads
    and exports like any other. Prune a trained model, then fine-tune it,
    ideally with the unpruned model as teacher (`recover_channels`).

    Args:
        model: A built functional or Sequential `keras.Model`, channels last.
        fraction: Fraction of each group's channels kept, in `(0, 1]`.
            Defaults to `0.5`.
        round_to: Kept channel counts are multiples of this (mobile kernels
            prefer multiples of 4 or 8); `1` for exact fractions. Defaults to
            `8`.
        criterion: `"l1"` or `"bn"`. Defaults to `"l1"`.

    Returns:
        A new `keras.Model` with fewer channels.

    Example:
        ```python
        small = prune_channels(student, fraction=0.5)
        small.count_params() < student.count_params()  # True
        ```

    References:
        Li, Kadav, Durdanovic, Samet & Graf, "Pruning Filters for Efficient
        ConvNets", ICLR 2017. https://arxiv.org/abs/1608.08710
        Liu, Li, Shen, Huang, Yan & Zhang, "Learning Efficient Convolutional
        Networks through Network Slimming", ICCV 2017.
        https://arxiv.org/abs/1708.06519
    """
    check_model("model", model)
    fraction = check_kept_fraction("fraction", fraction)
    round_to = check_int("round_to", round_to)
    check_choice("criterion", criterion, CRITERIA)
    graph = read_graph(model)
    plan = analyze(graph, model)
    _warn_kept_whole(plan)
    choose_channels(plan, graph, fraction, round_to, criterion)
    return rebuild(model, graph, plan)


def _warn_kept_whole(plan):
    """Warns once for the prunable channels that a layer mixing them keeps whole."""
    lines = []
    for root in plan.roots():
        space = plan.spaces[root]
        if space.frozen and space.producers and space.reasons and not space.output:
            producers = ", ".join(repr(name) for name in space.producers)
            lines.append(f"the output channels of {producers}, because of {space.reasons[0]}")
    if lines:
        warnings.warn(
            "prune_channels keeps some channels whole: " + "; ".join(lines) + ".",
            UserWarning,
            stacklevel=3,
        )
