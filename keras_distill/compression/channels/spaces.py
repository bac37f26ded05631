"""Which channels of a model must be removed together: channel spaces and views.

Every tensor's last axis is described by a *view*: a tuple of blocks
`(repeat, (space, ...))`, laid out as `repeat` copies of the spaces' channels
one after another (a `Flatten` repeats its input's channels once per spatial
position; a `Concatenate` joins the blocks of its inputs). A *space* is a
set of channels that every layer using it must keep or drop alike: the
filters of a convolution, and everything that passes them on unchanged
(BatchNormalization, activations, pooling, depthwise convolutions). An `Add`
(or another elementwise merge) ties the spaces of its inputs into one.
Spaces the pruner must not change are *frozen*: model inputs and outputs,
and the inputs of layers that mix channels (a `Reshape` that changes the
last axis, a `Softmax`, `LayerNormalization`, ...).
"""

import dataclasses
import math

import numpy as np

PRODUCERS = ("Conv1D", "Conv2D", "Conv3D", "Dense", "SeparableConv1D", "SeparableConv2D")
DEPTHWISE = ("DepthwiseConv1D", "DepthwiseConv2D")
MERGES = ("Add", "Average", "Maximum", "Minimum", "Multiply", "Subtract")
PASS_THROUGH = (
    "Activation",
    "ActivityRegularization",
    "AlphaDropout",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "Dropout",
    "ELU",
    "GaussianDropout",
    "GaussianNoise",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "Identity",
    "LeakyReLU",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "PReLU",
    "ReLU",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
)
SPECIAL = ("BatchNormalization", "Concatenate", "Flatten", "InputLayer", "Reshape")
FOLLOWED = tuple(sorted(PRODUCERS + DEPTHWISE + MERGES + PASS_THROUGH + SPECIAL))
"""Layer classes whose channels the pruner follows from input to output."""

_REFUSED = ("Lambda", "TFOpLambda", "SlicingOpLambda")
_CHANNEL_MIXING_ACTIVATIONS = ("softmax", "log_softmax")


@dataclasses.dataclass
class Space:
    """Channels removed together; `parent` links tied spaces (union-find)."""

    size: int
    producers: list
    frozen: bool = False
    reasons: list = dataclasses.field(default_factory=list)
    output: bool = False
    parent: int = -1


class Plan:
    """The views of every layer's inputs and output, and the spaces they use."""

    def __init__(self):
        self.spaces = []
        self.inputs = {}
        self.output = {}
        self.kept = {}

    def new_space(self, size, producer=None, frozen=False):
        self.spaces.append(Space(int(size), [producer] if producer else [], frozen))
        return ((1, (len(self.spaces) - 1,)),)

    def find(self, space):
        while self.spaces[space].parent >= 0:
            space = self.spaces[space].parent
        return space

    def root(self, space):
        return self.spaces[self.find(space)]

    def roots(self):
        return [i for i, space in enumerate(self.spaces) if space.parent < 0]

    def tie(self, first, second, layer):
        first, second = self.find(first), self.find(second)
        if first == second:
            return
        a, b = self.spaces[first], self.spaces[second]
        if a.size != b.size:
            raise ValueError(
                f"Layer {layer!r} combines tensors of {a.size} and {b.size} channels; the "
                "channel pruner cannot tie them. Received: mismatched channel counts"
            )
        b.parent = first
        a.producers += b.producers
        a.frozen = a.frozen or b.frozen
        a.output = a.output or b.output
        a.reasons += b.reasons

    def freeze(self, view, reason=None, output=False):
        for _, spaces in view:
            for space in spaces:
                root = self.root(space)
                root.frozen = True
                root.output = root.output or output
                if reason:
                    root.reasons.append(reason)

    def size(self, view):
        return sum(repeat * sum(self.root(s).size for s in spaces) for repeat, spaces in view)

    def flat_kept(self, view):
        """Indices along the last axis of a tensor with this view that the pruned model keeps."""
        kept, base = [], 0
        for repeat, spaces in view:
            for _ in range(repeat):
                for space in spaces:
                    root = self.find(space)
                    kept.append(base + self.kept.get(root, np.arange(self.spaces[root].size)))
                    base += self.spaces[root].size
        return np.concatenate(kept) if kept else np.zeros((0,), np.int64)

    def channel_map(self, view):
        """`(roots, channels)`: for each index of the last axis, its space and channel."""
        roots, channels = [], []
        for repeat, spaces in view:
            for _ in range(repeat):
                for space in spaces:
                    root = self.find(space)
                    size = self.spaces[root].size
                    roots.append(np.full(size, root))
                    channels.append(np.arange(size))
        return np.concatenate(roots), np.concatenate(channels)


def analyze(graph, model):
    """The `Plan` of `graph` (see `read_graph`): views of every layer call, spaces tied.

    Raises:
        ValueError: For a `Lambda`, a custom layer or a channels-first layer,
            naming it.
    """
    plan = Plan()
    for call in graph.calls:
        if call.class_name == "InputLayer":
            plan.output[call.name] = plan.new_space(_input_channels(call, model), frozen=True)
            continue
        _check_followable(call, model)
        views = [plan.output[name] for name in call.inputs]
        plan.inputs[call.name] = views
        plan.output[call.name] = _output_view(plan, call, views)
    for name in graph.outputs:
        plan.freeze(plan.output[name], output=True)
    return plan


def _output_view(plan, call, views):
    config = call.entry["config"]
    kind = call.class_name
    if kind in MERGES:
        for view in views[1:]:
            _tie_views(plan, views[0], view, call)
        return views[0]
    if kind == "Concatenate":
        if _is_channel_axis(config.get("axis", -1), _input_rank(call)):
            return tuple(block for view in views for block in view)
        for view in views[1:]:
            _tie_views(plan, views[0], view, call)
        return views[0]
    (view,) = views if len(views) == 1 else (None,)
    if view is None:
        return _kept_whole(plan, call, views, "it takes several inputs")
    if kind in PRODUCERS:
        if config.get("groups", 1) != 1:
            return _kept_whole(plan, call, views, "its grouped convolution mixes channel groups")
        size = config["units"] if kind == "Dense" else config["filters"]
        output = plan.new_space(size, producer=call.name)
        if config.get("activation") in _CHANNEL_MIXING_ACTIVATIONS:
            plan.freeze(output, f"{call.name!r} ({kind}) applies a softmax over its channels")
        return output
    if kind in DEPTHWISE:
        if config.get("depth_multiplier", 1) != 1:
            return _kept_whole(plan, call, views, "its depth_multiplier is not 1")
        return view
    if kind == "BatchNormalization":
        axis = config.get("axis", -1)
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        if not _is_channel_axis(axis, _input_rank(call)):
            return _kept_whole(plan, call, views, f"it normalizes axis {axis}, not the channels")
        return view
    if kind == "Flatten":
        shape = _input_shape(call)
        spatial = math.prod(shape[1:-1]) if len(shape) > 2 else 1
        if spatial == 1:
            return view
        if len(view) != 1 or None in shape[1:-1]:
            return _kept_whole(plan, call, views, "it flattens joined or unsized channels")
        return ((view[0][0] * spatial, view[0][1]),)
    if kind == "Reshape":
        target = tuple(config.get("target_shape") or ())
        if target and target[-1] == _input_shape(call)[-1] and target[-1] not in (-1, None):
            return view
        return _kept_whole(plan, call, views, "it changes the channel (last) axis")
    if kind == "Activation" and config.get("activation") in _CHANNEL_MIXING_ACTIVATIONS:
        return _kept_whole(plan, call, views, "its softmax mixes the channels")
    if kind in PASS_THROUGH:
        return view
    return _kept_whole(plan, call, views, "the pruner does not follow channels through it")


def _kept_whole(plan, call, views, why):
    """Freezes the inputs of `call`; its output is a new frozen space."""
    for view in views:
        plan.freeze(view, f"{call.name!r} ({call.class_name}): {why}")
    return plan.new_space(_output_channels(call), frozen=True)


def _tie_views(plan, first, second, call):
    same = len(first) == len(second) and all(
        a[0] == b[0] and len(a[1]) == len(b[1]) for a, b in zip(first, second)
    )
    if same:
        for (_, a_spaces), (_, b_spaces) in zip(first, second):
            for a, b in zip(a_spaces, b_spaces):
                plan.tie(a, b, call.name)
        return
    reason = f"{call.name!r} ({call.class_name}) merges differently joined channels"
    plan.freeze(first, reason)
    plan.freeze(second, reason)


def _check_followable(call, model):
    layer = call.layer
    module = type(layer).__module__ or ""
    builtin = (
        ".layers." in module
        and module.startswith(("keras.", "tf_keras."))
        and type(layer).__name__ == call.class_name
    )
    if call.class_name in _REFUSED or not builtin:
        kind = "a Lambda" if call.class_name in _REFUSED else "not a built-in Keras layer"
        raise ValueError(
            f"The channel pruner cannot follow layer {call.name!r} ({call.class_name}): it is "
            f"{kind}, so which output channels depend on which input channels is unknown, and "
            "the model cannot be rebuilt from its config safely. Replace it with built-in "
            f"layers, or prune the model around it. Layers followed: {list(FOLLOWED)}. "
            f"Received: model={model.name!r} with layer {call.name!r} of class "
            f"{type(layer).__module__}.{type(layer).__name__}"
        )
    if call.entry["config"].get("data_format") == "channels_first":
        raise ValueError(
            f"The channel pruner follows channels-last layers only; layer {call.name!r} "
            f"({call.class_name}) has its channels first. Build the model channels-last. "
            f"Received: data_format='channels_first' in {call.name!r}"
        )


def _is_channel_axis(axis, rank):
    return axis == -1 or (rank is not None and axis == rank - 1)


def _input_shape(call):
    build = (call.entry or {}).get("build_config") or {}
    shape = build.get("input_shape")
    if shape is None or (shape and isinstance(shape[0], (list, tuple))):
        shape = call.layer.input.shape if not isinstance(call.layer.input, list) else None
        shape = shape if shape is not None else call.layer.input[0].shape
    return tuple(shape)


def _input_rank(call):
    build = (call.entry or {}).get("build_config") or {}
    shape = build.get("input_shape")
    if shape and isinstance(shape[0], (list, tuple)):
        return len(shape[0])
    return len(_input_shape(call))


def _output_channels(call):
    return int(call.layer.output.shape[-1])


def _input_channels(call, model):
    if call.entry is None:
        return int(model.input_shape[-1])
    config = call.entry["config"]
    shape = config.get("batch_shape") or config.get("batch_input_shape")
    return int(shape[-1])
