"""Distillation losses: pure functions of logits, and thin `Loss` classes.

Every function takes teacher and student *logits* and returns one value per
example (reduce it yourself, or use the matching `keras.losses.Loss` class).
The arithmetic runs through `log_softmax`, so the results are stable for
large logits and under mixed precision. The tempered KL and soft
cross-entropy run in float64: at large `T` the tempered distributions differ
by about `1/T`, which float32 cannot resolve (and `T^2` amplifies the error).

Conventions: `p^T = softmax(z / T)` is the distribution at temperature `T`.
"""

import tensorflow as tf

from keras_distill import _checks
from keras_distill import _kl_forms
from keras_distill import divergences
from keras_distill._add_at import add_at
from keras_distill._keras import keras
from keras_distill._keras import register_serializable
from keras_distill.divergences import generalized_jsd
from keras_distill.divergences import reverse_kl
from keras_distill.divergences import skew_kl
from keras_distill.divergences import skew_reverse_kl
from keras_distill.divergences import total_variation

_MASK_LOGIT = 1000.0


def distillation_kl(teacher_logits, student_logits, temperature=1.0):
    """Temperature-scaled KL divergence from teacher to student, per example.

    `T^2 * KL(p_t^T || p_s^T) = T^2 * sum_k p_t^T[k] (log p_t^T[k] - log p_s^T[k])`

    The `T^2` factor keeps the gradient scale independent of `T`. When every
    position's tempered logits are finite and spread enough
    (`(max(z) - min(z)) / T >= 1`, as for trained classifiers and language
    models at usual temperatures), it runs in float32, where the distributions
    differ by far more than float32's resolution (absolute error about
    `1e-7 * T^2 * log(num_classes)`). At `T <= 1`, logits of a smaller range
    at some position (untrained language models) also run in float32, as
    `log1p(E_p[expm1(-c)])` with `c` the centred tempered logit difference,
    which keeps nearly equal distributions exact. Otherwise (higher
    temperatures, masked classes) it runs in float64: the
    tempered distributions then differ by about `1/T`, which float32 cannot
    resolve. Where they are tiny (below `1e-4`), even float64
    cancels, and the quadratic expansion
    `T^2 * KL = 1/2 * sum_k p_t^T[k] (d[k] - sum_j p_t^T[j] d[j])^2` with
    `d = z_t - z_s` is used instead (relative error below `1e-4`); it is the
    high-temperature limit of Hinton et al. (section 2.1). The gradient is
    written out: `T (p_s^T - p_t^T)` for the student's logits.

    Masked classes (`-inf` logits) are exact: a class the teacher gives
    probability 0 contributes 0 (value and gradient); a class only the
    student masks makes the KL `+inf` with a finite student gradient. This
    is the forward KL of `keras_distill.divergences` (registered as `"kl"`
    and `"forward_kl"`).

    Args:
        teacher_logits: Tensor `(..., num_classes)`.
        student_logits: Tensor `(..., num_classes)`.
        temperature: Positive float `T`. Defaults to `1.0`.

    Returns:
        Float32 tensor `(...)`: one value per example.

    Example:
        >>> distillation_kl([[2.0, 0.0]], [[0.0, 0.0]], temperature=2.0)

    References:
        Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
        Network", 2015. https://arxiv.org/abs/1503.02531
    """
    teacher = tf.cast(teacher_logits, tf.float32)
    student = tf.cast(student_logits, tf.float32)
    temperature32 = tf.cast(temperature, tf.float32)
    temperature64 = tf.cast(temperature, tf.float64)
    return _tempered_kl(teacher, student, temperature32, temperature64)


@tf.custom_gradient
def _tempered_kl(teacher, student, temperature32, temperature64):
    """`T^2 * KL` in the form `_kl_forms.choose` picks, with the gradient written out.

    `d(T^2 KL)/dz_s = T (p_s - p_t)` and `d(T^2 KL)/dz_t = T p_t (log p_t -
    log p_s - KL)`: writing them out spares the gradient of the branch
    choice (which keeps every branch's intermediates) and is cheaper.
    """
    form = _kl_forms.choose(teacher, student, temperature32)
    value = _kl_forms.values(form, teacher, student, temperature32, temperature64)

    def gradient(upstream):
        upstream = upstream[..., None]
        teacher_gradient, student_gradient = _kl_forms.gradients(
            form, teacher, student, temperature32, temperature64
        )
        return upstream * teacher_gradient, upstream * student_gradient, None, None

    return value, gradient


def top_k_distillation_kl(teacher_values, teacher_indices, student_logits, temperature=1.0):
    """`distillation_kl` from the teacher's top-k logits, without full teacher rows.

    The teacher keeps `k` logits per example or position, `v` at classes
    `i` (a top-k `TeacherCache` with `top_k_rest="renormalize"`); every other
    class has probability 0. With `p_t = softmax(v / T)` over the kept
    classes and the student's tempered log-probabilities gathered there,
    `log q_s[i_j] = z_s[i_j] / T - logsumexp(z_s / T)`:

    `T^2 * KL = T^2 * sum_j p_t[j] (log p_t[j] - log q_s[i_j])`

    It equals `distillation_kl` of the expanded rows (classes outside the top
    k at a very low logit, as `TeacherCache.full_logits` gives them) up to
    `exp(-1e4 / T)`, and reads the student's row once (one `logsumexp`), in
    float32 (absolute error about `1e-7 * T^2 * log(num_classes)`: unlike
    `distillation_kl` it has no exact form for nearly equal distributions,
    which only arise here when `k` is every class). The gradient is
    written out: `T (q_s - p_t)` for the student's logits, `p_t` scattered
    to the kept classes (0 elsewhere); no gradient flows to the teacher. A
    kept class of teacher logit `-inf` has probability 0 and contributes 0;
    a kept class the student masks (`-inf`) makes the KL `+inf` with a
    finite gradient, as in `distillation_kl`.

    Args:
        teacher_values: Tensor `(..., k)`: the kept teacher logits.
        teacher_indices: Integer tensor `(..., k)`: their classes, distinct
            per row, in `[0, num_classes)`.
        student_logits: Tensor `(..., num_classes)`.
        temperature: Positive float `T`. Defaults to `1.0`.

    Returns:
        Float32 tensor `(...)`: one value per example or position.

    Example:
        >>> top_k_distillation_kl([[2.0, 1.0]], [[3, 0]], tf.zeros([1, 8]), temperature=2.0)

    References:
        Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
        Network", 2015. https://arxiv.org/abs/1503.02531
    """
    values = tf.stop_gradient(tf.cast(teacher_values, tf.float32))
    indices = tf.cast(teacher_indices, tf.int32)
    student = tf.cast(student_logits, tf.float32)
    return _top_k_kl(values, indices, student, tf.cast(temperature, tf.float32))


@tf.custom_gradient
def _top_k_kl(values, indices, student, temperature):
    """`top_k_distillation_kl` with its student gradient `T (q_s - p_t)` written out."""
    tempered = student / temperature
    log_normalizer = tf.reduce_logsumexp(tempered, axis=-1)
    kept_logits = tf.gather(student, indices, batch_dims=indices.shape.rank - 1)
    value, p_teacher = _top_k_kl_parts(values, kept_logits, temperature, log_normalizer)

    def gradient(upstream):
        amounts = upstream[..., None] * temperature
        q_student = tf.exp(tempered - log_normalizer[..., None])
        return None, None, add_at(q_student * amounts, indices, -p_teacher * amounts), None

    return value, gradient


def _top_k_kl_parts(values, kept_logits, temperature, log_normalizer):
    """`(T^2 * KL, p_t over the kept classes)`, given the student's logits at the kept classes
    and `logsumexp(z_s / T)` per row."""
    log_p_teacher = tf.nn.log_softmax(values / temperature, axis=-1)
    p_teacher = tf.exp(log_p_teacher)
    gathered = kept_logits / temperature
    # sum_j p_t (log p_t - z_s/T) + logsumexp(z_s/T), since sum_j p_t = 1; p_t = 0 adds 0.
    terms = tf.where(p_teacher > 0.0, p_teacher * (log_p_teacher - gathered), 0.0)
    return (tf.reduce_sum(terms, axis=-1) + log_normalizer) * temperature**2, p_teacher


def soft_target_cross_entropy(teacher_logits, student_logits, temperature=1.0):
    """Temperature-scaled cross-entropy against the teacher's soft targets.

    `T^2 * H(p_t^T, p_s^T) = -T^2 * sum_k p_t^T[k] log p_s^T[k]`

    Equals `distillation_kl` plus the teacher's entropy (constant in the
    student), so both give the same gradients; computed that way, in float64.

    Args:
        teacher_logits: Tensor `(..., num_classes)`.
        student_logits: Tensor `(..., num_classes)`.
        temperature: Positive float `T`. Defaults to `1.0`.

    Returns:
        Float32 tensor `(...)`: one value per example.

    References:
        Hinton, Vinyals & Dean, 2015. https://arxiv.org/abs/1503.02531
    """
    temperature64 = tf.cast(temperature, tf.float64)
    log_p_teacher = divergences.tempered_log_probs(teacher_logits, temperature64)
    # -H(p) = KL(p || 1): sums p log p with 0 log 0 = 0 for masked classes.
    entropy = -divergences.kl_from_log_probs(log_p_teacher, tf.zeros_like(log_p_teacher))
    entropy = tf.cast(entropy * temperature64**2, tf.float32)
    return distillation_kl(teacher_logits, student_logits, temperature) + entropy


def logit_mse(teacher_logits, student_logits):
    """Mean squared difference of logits, per example.

    `1/K * sum_k (z_s[k] - z_t[k])^2`: the high-temperature limit of
    distillation (Hinton et al. 2015, section 2.1). No temperature applies.

    Args:
        teacher_logits: Tensor `(..., num_classes)`.
        student_logits: Tensor `(..., num_classes)`.

    Returns:
        Float32 tensor `(...)`: one value per example.

    References:
        Ba & Caruana, "Do Deep Nets Really Need to be Deep?", 2014.
    """
    difference = tf.cast(student_logits, tf.float32) - tf.cast(teacher_logits, tf.float32)
    return tf.reduce_mean(tf.square(difference), axis=-1)


def decoupled_kd(teacher_logits, student_logits, target, temperature=1.0, alpha=1.0, beta=8.0):
    """Decoupled knowledge distillation (DKD), per example.

    `T^2 * (alpha * KL(b_t || b_s) + beta * KL(q_t || q_s))`, where `b` is the
    binary (target, non-target) split of `p^T` (TCKD) and `q` is `p^T`
    renormalised over the non-target classes (NCKD).

    Args:
        teacher_logits: Tensor `(..., num_classes)`.
        student_logits: Tensor `(..., num_classes)`.
        target: Integer class indices `(...)`.
        temperature: Positive float `T`. Defaults to `1.0`.
        alpha: Weight of the target-class term (TCKD). Defaults to `1.0`.
        beta: Weight of the non-target term (NCKD). Defaults to `8.0`.

    Returns:
        Float32 tensor `(...)`.

    References:
        Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022.
        https://arxiv.org/abs/2203.08679
    """
    teacher_logits = tf.cast(teacher_logits, tf.float32) / temperature
    student_logits = tf.cast(student_logits, tf.float32) / temperature
    num_classes = tf.shape(student_logits)[-1]
    target = tf.reshape(tf.cast(target, tf.int32), tf.shape(student_logits)[:-1])
    target_mask = tf.one_hot(target, num_classes)

    def binary_log_probs(logits):
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        log_target = tf.reduce_sum(log_probs * target_mask, axis=-1)
        log_rest = tf.reduce_logsumexp(logits - _MASK_LOGIT * target_mask, axis=-1)
        log_rest -= tf.reduce_logsumexp(logits, axis=-1)
        return tf.stack([log_target, log_rest], axis=-1)

    log_b_teacher = binary_log_probs(teacher_logits)
    log_b_student = binary_log_probs(student_logits)
    tckd = tf.reduce_sum(tf.exp(log_b_teacher) * (log_b_teacher - log_b_student), axis=-1)

    log_q_teacher = tf.nn.log_softmax(teacher_logits - _MASK_LOGIT * target_mask, axis=-1)
    log_q_student = tf.nn.log_softmax(student_logits - _MASK_LOGIT * target_mask, axis=-1)
    nckd = tf.reduce_sum(tf.exp(log_q_teacher) * (log_q_teacher - log_q_student), axis=-1)
    return (alpha * tckd + beta * nckd) * (temperature**2)


def hard_label_cross_entropy(labels, student_logits):
    """Cross-entropy `H(y, softmax(z_s))` per example, sparse or one-hot labels.

    Labels with the same rank as the logits are one-hot (or soft) rows;
    otherwise they are integer class indices.
    """
    student_logits = tf.cast(student_logits, tf.float32)
    if labels.shape.rank == student_logits.shape.rank and labels.shape[-1] != 1:
        return tf.nn.softmax_cross_entropy_with_logits(tf.cast(labels, tf.float32), student_logits)
    labels = tf.reshape(tf.cast(labels, tf.int32), tf.shape(student_logits)[:-1])
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels, student_logits)


class DistillationLoss(keras.losses.Loss):
    """One `keras.losses.Loss` wrapper for the pure functions above.

    `y_true` is the teacher's logits, `y_pred` the student's. The wrapped
    function `fn(teacher_logits, student_logits, **kwargs)` gets
    `temperature` (when it takes one), `target` (class indices, when it needs
    them; the teacher's top-1 class where no label is given) and the
    subclass's extra hyperparameters. The `Distiller` calls `per_example`
    with its own temperature and the hard labels; used on its own, the loss
    applies `self.temperature`. Like Keras's `LossFunctionWrapper`, each named
    loss below only says which function it wraps.

    Args:
        temperature: Positive float. Defaults to `1.0`.
        name: Name of the loss. Defaults to the wrapped function's name.
        **fn_kwargs: Extra keyword arguments of the wrapped function.
    """

    fn = None
    """The pure per-example function this loss wraps."""

    uses_temperature = True
    """Whether `fn` takes a `temperature`."""

    needs_target = False
    """Whether `fn` takes class targets (the Distiller skips them otherwise)."""

    def __init__(self, temperature=1.0, name=None, **fn_kwargs):
        super().__init__(name=name or self.fn.__name__)
        self.temperature = temperature
        self.fn_kwargs = fn_kwargs

    def per_example(self, teacher_logits, student_logits, temperature=None, target=None):
        """The loss of each example, `(batch,)`."""
        kwargs = dict(self.fn_kwargs)
        if self.uses_temperature:
            kwargs["temperature"] = self.temperature if temperature is None else temperature
        if self.needs_target:
            kwargs["target"] = tf.argmax(teacher_logits, axis=-1) if target is None else target
        return type(self).fn(teacher_logits, student_logits, **kwargs)

    def call(self, y_true, y_pred):
        return self.per_example(y_true, y_pred, self.temperature)

    def get_config(self):
        return {"name": self.name, "temperature": self.temperature, **self.fn_kwargs}


@register_serializable
class DistillationKL(DistillationLoss):
    """`keras.losses.Loss` for `distillation_kl` (the default)."""

    fn = distillation_kl


@register_serializable
class SoftTargetCrossEntropy(DistillationLoss):
    """`keras.losses.Loss` for `soft_target_cross_entropy`."""

    fn = soft_target_cross_entropy


@register_serializable
class LogitMSE(DistillationLoss):
    """`keras.losses.Loss` for `logit_mse` (temperature has no effect)."""

    fn = logit_mse
    uses_temperature = False


@register_serializable
class DecoupledKD(DistillationLoss):
    """`keras.losses.Loss` for `decoupled_kd`.

    Without hard labels (`target=None`, e.g. used on its own or on unlabeled
    examples) the teacher's top-1 class is the target.

    Args:
        temperature: Positive float. Defaults to `1.0`.
        alpha: Weight of TCKD. Defaults to `1.0`.
        beta: Weight of NCKD. Defaults to `8.0`.
        name: Name of the loss. Defaults to `"decoupled_kd"`.
    """

    fn = decoupled_kd
    needs_target = True

    def __init__(self, temperature=1.0, alpha=1.0, beta=8.0, name=None):
        super().__init__(temperature=temperature, name=name, alpha=alpha, beta=beta)

    @property
    def alpha(self):
        """Weight of the target-class term (TCKD)."""
        return self.fn_kwargs["alpha"]

    @property
    def beta(self):
        """Weight of the non-target-class term (NCKD)."""
        return self.fn_kwargs["beta"]


@register_serializable
class ReverseKL(DistillationLoss):
    """`keras.losses.Loss` for `divergences.reverse_kl`: `T^2 KL(q || p)`."""

    fn = reverse_kl


@register_serializable
class GeneralizedJSD(DistillationLoss):
    """`keras.losses.Loss` for `divergences.generalized_jsd`.

    Args:
        temperature: Positive float. Defaults to `1.0`.
        beta: Float in `[0, 1]`, the teacher's weight in the mixture; `0` is
            forward KL, `1` reverse KL (TRL's convention). Defaults to `0.5`.
        name: Name of the loss. Defaults to `"generalized_jsd"`.
    """

    fn = generalized_jsd

    def __init__(self, temperature=1.0, beta=0.5, name=None):
        beta = _checks.check_beta(beta)
        super().__init__(temperature=temperature, name=name, beta=beta)

    @property
    def beta(self):
        """The teacher's weight in the mixture `m = beta p + (1 - beta) q`."""
        return self.fn_kwargs["beta"]


class _SkewLoss(DistillationLoss):
    """Shared constructor of the two skew KLs."""

    def __init__(self, temperature=1.0, skew=0.1, name=None):
        skew = _checks.check_skew(skew)
        super().__init__(temperature=temperature, name=name, skew=skew)

    @property
    def skew(self):
        """The weight `a` of the distribution mixed into the second argument."""
        return self.fn_kwargs["skew"]


@register_serializable
class SkewKL(_SkewLoss):
    """`keras.losses.Loss` for `divergences.skew_kl`: `T^2 KL(p || a p + (1 - a) q)`.

    Args:
        temperature: Positive float. Defaults to `1.0`.
        skew: Float `a` in `[0, 1)`. Defaults to `0.1`.
        name: Name of the loss. Defaults to `"skew_kl"`.
    """

    fn = skew_kl


@register_serializable
class SkewReverseKL(_SkewLoss):
    """`keras.losses.Loss` for `divergences.skew_reverse_kl`: `T^2 KL(q || a q + (1 - a) p)`.

    Args:
        temperature: Positive float. Defaults to `1.0`.
        skew: Float `a` in `[0, 1)`. Defaults to `0.1`.
        name: Name of the loss. Defaults to `"skew_reverse_kl"`.
    """

    fn = skew_reverse_kl


@register_serializable
class TotalVariation(DistillationLoss):
    """`keras.losses.Loss` for `divergences.total_variation`: `T/2 sum |p - q|`."""

    fn = total_variation


_REGISTRY = {
    "kl": DistillationKL,
    "forward_kl": DistillationKL,
    "distillation_kl": DistillationKL,
    "reverse_kl": ReverseKL,
    "jsd": GeneralizedJSD,
    "generalized_jsd": GeneralizedJSD,
    "skew_kl": SkewKL,
    "skew_reverse_kl": SkewReverseKL,
    "tv": TotalVariation,
    "total_variation": TotalVariation,
    "soft_ce": SoftTargetCrossEntropy,
    "soft_target_cross_entropy": SoftTargetCrossEntropy,
    "mse": LogitMSE,
    "logit_mse": LogitMSE,
    "dkd": DecoupledKD,
    "decoupled_kd": DecoupledKD,
}


def get(identifier):
    """Returns a `DistillationLoss` from a name, an instance or a config.

    Args:
        identifier: A name from `names()` (`"kl"`, `"reverse_kl"`, `"jsd"`,
            `"skew_kl"`, `"skew_reverse_kl"`, `"tv"`, `"soft_ce"`, `"mse"`,
            `"dkd"` or their long names), with the class's default
            hyperparameters; a `DistillationLoss` instance (e.g.
            `GeneralizedJSD(beta=0.9)`); or its config dict.

    Returns:
        A `DistillationLoss` instance.

    Example:
        >>> keras_distill.losses.get("dkd").beta
        8.0
    """
    if isinstance(identifier, DistillationLoss):
        return identifier
    if isinstance(identifier, str):
        key = identifier.strip().lower()
        if key not in _REGISTRY:
            raise ValueError(
                f"Unknown distillation loss: {identifier!r}. Valid names are: "
                f"{sorted(_REGISTRY)}. Received: identifier={identifier!r}"
            )
        return _REGISTRY[key]()
    if isinstance(identifier, dict):
        loss = keras.saving.deserialize_keras_object(identifier)
        if isinstance(loss, DistillationLoss):
            return loss
    raise ValueError(
        "Expected a distillation loss name, a `DistillationLoss` instance or "
        f"its config. Received: identifier={identifier!r}"
    )


def names():
    """The names `get` accepts (and `compile(distillation_loss=...)`), sorted."""
    return sorted(_REGISTRY)
