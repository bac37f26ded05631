"""What to match between teacher and student besides the logits."""

import tensorflow as tf

from keras_distill.matching import feature_losses

ADAPTER_CHOICES = ("auto", "projection", "resize", "identity")
_SAME_SHAPE_LOSSES = ("mse", "hint", "cosine")
_SAME_SPATIAL_LOSSES = ("attention_transfer", "at")


def _check_name(what, value, choices):
    if value not in choices:
        raise ValueError(
            f"Unknown {what}: {value!r}. Valid names are: {sorted(choices)}. "
            f"Received: loss={value!r}"
        )


class Match:
    """What every match has: two layers, a loss, a weight and a name in the history.

    Subclasses say what `kind` of value the capture records on each layer
    and how `compute` turns the two captured values into a loss.
    """

    kind = None
    """What `LayerCapture` records on the layers: `"output"` or `"attention"`."""

    def __init__(self, student_layer, teacher_layer, loss, weight, name):
        self.student_layer = student_layer
        self.teacher_layer = teacher_layer
        self.loss = loss
        self.weight = float(weight)
        self.name = name

    def compute(self, student_value, teacher_value, adapter=None):
        """The match's loss from the two captured values (per example or a scalar)."""
        raise NotImplementedError

    def adapter_plan(self, student_shape, teacher_shape):
        """`(project, resize)` for an adapter, or `None` when no adapter is needed."""
        return None

    def get_config(self):
        return {
            "student_layer": self.student_layer,
            "teacher_layer": self.teacher_layer,
            "loss": self.loss,
            "weight": self.weight,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class FeatureMatch(Match):
    """Matches an intermediate student layer's output to a teacher layer's.

    Args:
        student_layer: Name (or `"outer/inner"` path) of the student layer.
        teacher_layer: Name (or path) of the teacher layer.
        loss: `"mse"`, `"cosine"`, `"hint"` (FitNets: a learned projection
            and MSE, even when shapes agree), `"rkd_distance"`, `"rkd_angle"`,
            `"attention_transfer"` (`"at"`) or `"similarity_preserving"`
            (`"sp"`). Defaults to `"mse"`.
        weight: Weight of the term in the total loss. Defaults to the paper's
            value (RKD 25 and 50, AT 500, SP 3000) or `1.0`.
        adapter: `"auto"` (a projection and/or resize when shapes differ and
            the loss needs them equal), `"projection"`, `"resize"`,
            `"identity"`, or a `keras.layers.Layer` of your own. Defaults to
            `"auto"`.
        name: Name in the `fit()` history. Defaults to
            `"<loss>_<student_layer>"`.

    Example:
        ```python
        FeatureMatch(student_layer="s_block2", teacher_layer="t_block3",
                     loss="mse", weight=1.0)
        ```
    """

    kind = "output"

    def __init__(
        self, student_layer, teacher_layer, loss="mse", weight=None, adapter="auto", name=None
    ):
        _check_name("feature loss", loss, feature_losses.FEATURE_LOSSES)
        if isinstance(adapter, str) and adapter not in ADAPTER_CHOICES:
            raise ValueError(
                f"`adapter` must be one of {list(ADAPTER_CHOICES)} or a keras Layer. "
                f"Received: adapter={adapter!r}"
            )
        super().__init__(
            student_layer,
            teacher_layer,
            loss,
            feature_losses.DEFAULT_WEIGHTS.get(loss, 1.0) if weight is None else weight,
            name or f"{loss}_{student_layer.replace('/', '_')}",
        )
        self.adapter = "projection" if loss == "hint" and adapter == "auto" else adapter

    def compute(self, student_value, teacher_value, adapter=None):
        """The feature loss of the (adapted) student output against the teacher's."""
        if adapter is not None:
            student_value = adapter(student_value)
        return feature_losses.FEATURE_LOSSES[self.loss](student_value, teacher_value)

    def adapter_plan(self, student_shape, teacher_shape):
        """`(project, resize)` for this match, or `None` when no adapter is needed."""
        if not isinstance(self.adapter, str):
            return None
        if self.adapter == "identity":
            return None
        if self.adapter in ("projection", "resize"):
            return (self.adapter == "projection", True)
        same_spatial = tuple(student_shape[1:-1]) == tuple(teacher_shape[1:-1])
        if self.loss in _SAME_SHAPE_LOSSES:
            if tuple(student_shape[1:]) == tuple(teacher_shape[1:]):
                return None
            return (student_shape[-1] != teacher_shape[-1], not same_spatial)
        if self.loss in _SAME_SPATIAL_LOSSES and not same_spatial:
            return (False, True)
        return None

    def get_config(self):
        """The constructor arguments (a layer given as `adapter` is stored as `"auto"`)."""
        adapter = self.adapter if isinstance(self.adapter, str) else "auto"
        return {**super().get_config(), "adapter": adapter}


class AttentionMatch(Match):
    """Matches the attention probabilities of two `MultiHeadAttention` layers.

    The probabilities are captured from the layers themselves (no need to
    pass `return_attention_scores`). With equal head counts heads are
    compared one to one; otherwise (or with `average_heads=True`) the heads
    of each layer are averaged first. Padding masks given to the layers are
    respected.

    Args:
        student_layer: Name of the student's attention layer.
        teacher_layer: Name of the teacher's attention layer.
        loss: `"kl"` (MiniLM: KL of attention rows) or `"mse"` (TinyBERT).
            Defaults to `"kl"`.
        weight: Weight in the total loss. Defaults to `1.0`.
        average_heads: Average heads before comparing. Defaults to `None`
            (only when head counts differ).
        name: Name in the `fit()` history. Defaults to
            `"attention_<loss>_<student_layer>"`.

    Example:
        ```python
        AttentionMatch(student_layer="s_mha_1", teacher_layer="t_mha_3", loss="kl")
        ```
    """

    kind = "attention"

    def __init__(
        self, student_layer, teacher_layer, loss="kl", weight=1.0, average_heads=None, name=None
    ):
        _check_name("attention loss", loss, feature_losses.ATTENTION_LOSSES)
        super().__init__(
            student_layer,
            teacher_layer,
            loss,
            weight,
            name or f"attention_{loss}_{student_layer.replace('/', '_')}",
        )
        self.average_heads = average_heads
        self.adapter = "identity"

    def compute(self, student_value, teacher_value, adapter=None):
        """The attention loss of `(probabilities, mask)` captures, heads averaged if needed."""
        (student, mask), (teacher, _) = student_value, teacher_value
        average = self.average_heads
        if average is None:
            average = student.shape[1] != teacher.shape[1]
        if average:
            student = _mean_heads(student)
            teacher = _mean_heads(teacher)
        return feature_losses.ATTENTION_LOSSES[self.loss](student, teacher, mask)

    def get_config(self):
        return {**super().get_config(), "average_heads": self.average_heads}

    @classmethod
    def uniform(cls, student_layers, teacher_layers, **kwargs):
        """TinyBERT's uniform mapping: student layer `i` <- teacher layer `i*k + k - 1`.

        `k = len(teacher_layers) // len(student_layers)`.

        Example:
            ```python
            AttentionMatch.uniform(["s_mha_0", "s_mha_1"],
                                   ["t_mha_0", "t_mha_1", "t_mha_2", "t_mha_3"])
            # s_mha_0 <- t_mha_1, s_mha_1 <- t_mha_3
            ```
        """
        if not student_layers or len(teacher_layers) < len(student_layers):
            raise ValueError(
                "A uniform mapping needs at least one student layer and no fewer teacher "
                f"layers. Received: {len(student_layers)} student and {len(teacher_layers)} "
                "teacher layers"
            )
        step = len(teacher_layers) // len(student_layers)
        return [
            cls(student, teacher_layers[i * step + step - 1], **kwargs)
            for i, student in enumerate(student_layers)
        ]


def _mean_heads(probabilities):
    return tf.reduce_mean(tf.cast(probabilities, tf.float32), axis=1, keepdims=True)
