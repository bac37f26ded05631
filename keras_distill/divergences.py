"""Divergences between token distributions: pure functions of logits.

Each function takes teacher logits `z_t` and student logits `z_s` of shape
`(..., vocab)` and returns one value per position, `(...)`, in float32. The
distributions are `p = softmax(z_t / T)` (teacher) and `q = softmax(z_s / T)`
(student); the arithmetic runs in float64 through `log_softmax`.

Masked vocabulary entries (logits `-inf`) and zero probabilities are exact:
a term `a_k * log(a_k / b_k)` with `a_k = 0` contributes 0 to `KL(a || b)`,
in the value and in the gradient (never `0 * inf = NaN`). A divergence is
`+inf` only where the first distribution puts mass on an entry where the
second has none (e.g. the teacher allows a token the student masks); the
student's gradient stays finite there. A row whose logits are all `-inf` is
not a distribution and gives NaN.

Temperature scaling: the KL-type divergences (reverse KL, generalized JSD,
the skew KLs) are multiplied by `T^2`, like `losses.distillation_kl`: each is
quadratic in `p - q` near `p = q`, so `T^2` keeps the soft-target gradient
scale independent of `T` (Hinton et al. 2015). Total variation is linear in
`|p - q|`, so it is multiplied by `T` for the same reason.
"""

import tensorflow as tf

from keras_distill import _checks


def tempered_log_probs(logits, temperature=1.0):
    """`log softmax(z / T)` in float64 (`-inf` logits give `-inf`)."""
    logits = tf.cast(logits, tf.float64)
    return tf.nn.log_softmax(logits / tf.cast(temperature, tf.float64), axis=-1)


def kl_from_log_probs(log_a, log_b):
    """`KL(a || b) = sum_k a_k (log a_k - log b_k)` over the last axis, float64.

    Entries with `a_k = 0` contribute 0 (value and gradient), even where
    `log b_k = -inf`. A NaN stays NaN (it is not a zero probability), so a
    broken teacher or student is never read as a zero loss.
    """
    a = tf.exp(log_a)
    support = tf.not_equal(a, 0.0)
    safe_log_a = tf.where(support, log_a, tf.zeros_like(log_a))
    safe_log_b = tf.where(support, log_b, tf.zeros_like(log_b))
    terms = tf.where(support, a * (safe_log_a - safe_log_b), tf.zeros_like(a))
    return tf.reduce_sum(terms, axis=-1)


def log_mixture(log_a, log_b, weight):
    """`log(w * a + (1 - w) * b)` from log-probabilities, stable for `-inf` entries.

    Args:
        log_a: Log-probabilities `log a`, float64.
        log_b: Log-probabilities `log b`, same shape.
        weight: Python float `w` in `[0, 1]`.
    """
    if weight == 0.0:
        return log_b
    if weight == 1.0:
        return log_a
    x = log_a + tf.math.log(tf.constant(weight, log_a.dtype))
    y = log_b + tf.math.log1p(tf.constant(-weight, log_b.dtype))
    high = tf.maximum(x, y)
    low = tf.minimum(x, y)
    # Where both are -inf, `high - high` would be NaN: shift by 0 there instead.
    safe_high = tf.where(tf.math.is_finite(high), high, tf.zeros_like(high))
    return high + tf.math.log1p(tf.exp(low - safe_high))


def _scaled(values, temperature, power):
    return tf.cast(values * tf.cast(temperature, tf.float64) ** power, tf.float32)


def reverse_kl(teacher_logits, student_logits, temperature=1.0):
    """Temperature-scaled reverse KL, student to teacher, per position.

    `T^2 * KL(q || p) = T^2 * sum_k q_k (log q_k - log p_k)`

    Mode-seeking: the student is pushed to put its mass where the teacher
    has a lot, and is not penalised for ignoring some of the teacher's modes
    (MiniLLM's objective, here per token, without its policy-gradient
    estimator). `+inf` where the student gives mass to a token the teacher
    masks (`-inf` teacher logit).

    Args:
        teacher_logits: Tensor `(..., vocab)`.
        student_logits: Tensor `(..., vocab)`.
        temperature: Positive float `T`. Defaults to `1.0`.

    Returns:
        Float32 tensor `(...)`: one value per position.

    Example:
        >>> reverse_kl([[2.0, 0.0]], [[0.0, 0.0]])  # KL(q || p) at T = 1

    References:
        Gu et al., "MiniLLM: Knowledge Distillation of Large Language
        Models", ICLR 2024. https://arxiv.org/abs/2306.08543
    """
    log_p = tempered_log_probs(teacher_logits, temperature)
    log_q = tempered_log_probs(student_logits, temperature)
    return _scaled(kl_from_log_probs(log_q, log_p), temperature, 2)


def generalized_jsd(teacher_logits, student_logits, temperature=1.0, beta=0.5):
    """Temperature-scaled generalized Jensen-Shannon divergence, per position.

    `T^2 * (beta * KL(p || m) + (1 - beta) * KL(q || m))`, `m = beta p + (1 - beta) q`

    for `0 < beta < 1` (Agarwal et al. 2024, eq. 1); `beta = 0.5` is the
    symmetric JSD, bounded by `T^2 log 2`. The ends follow TRL's
    `GKDTrainer.generalized_jsd_loss`: `beta = 0` is the forward
    `T^2 KL(p || q)` and `beta = 1` the reverse `T^2 KL(q || p)`. The formula
    itself tends to 0 at both ends (near 0 it is about `beta * KL(p || q)`,
    near 1 about `(1 - beta) * KL(q || p)`), so the ends are the limits of
    `JSD / beta` and `JSD / (1 - beta)`, not of `JSD`: a `beta` close to 0
    gives a loss `beta` times smaller than `beta = 0`.

    Args:
        teacher_logits: Tensor `(..., vocab)`.
        student_logits: Tensor `(..., vocab)`.
        temperature: Positive float `T`. Defaults to `1.0`.
        beta: Float in `[0, 1]`: the teacher's weight in the mixture `m`.
            Defaults to `0.5`.

    Returns:
        Float32 tensor `(...)`: one value per position.

    Raises:
        ValueError: If `beta` is not a number in `[0, 1]`.

    Example:
        >>> generalized_jsd([[2.0, 0.0]], [[0.0, 0.0]], beta=0.5)

    References:
        Agarwal et al., "On-Policy Distillation of Language Models: Learning
        from Self-Generated Mistakes" (GKD), ICLR 2024.
        https://arxiv.org/abs/2306.13649
    """
    beta = _checks.check_beta(beta)
    log_p = tempered_log_probs(teacher_logits, temperature)
    log_q = tempered_log_probs(student_logits, temperature)
    if beta == 0.0:
        divergence = kl_from_log_probs(log_p, log_q)
    elif beta == 1.0:
        divergence = kl_from_log_probs(log_q, log_p)
    else:
        log_m = log_mixture(log_p, log_q, beta)
        divergence = beta * kl_from_log_probs(log_p, log_m) + (1.0 - beta) * kl_from_log_probs(
            log_q, log_m
        )
    return _scaled(divergence, temperature, 2)


def skew_kl(teacher_logits, student_logits, temperature=1.0, skew=0.1):
    """Temperature-scaled skew forward KL (DistiLLM's SKL), per position.

    `T^2 * KL(p || a p + (1 - a) q)` with `a = skew`

    Mixing some of the teacher into the student's distribution bounds the
    divergence (at most `T^2 log(1/a)`) and smooths its gradient where the
    student gives a teacher token almost no mass. `skew = 0` is the forward
    KL; any `skew > 0` keeps it finite even where the student masks a token
    the teacher allows.

    Args:
        teacher_logits: Tensor `(..., vocab)`.
        student_logits: Tensor `(..., vocab)`.
        temperature: Positive float `T`. Defaults to `1.0`.
        skew: Float `a` in `[0, 1)`. Defaults to `0.1` (the paper's value).

    Returns:
        Float32 tensor `(...)`: one value per position.

    Raises:
        ValueError: If `skew` is not a number in `[0, 1)`.

    References:
        Ko et al., "DistiLLM: Towards Streamlined Distillation for Large
        Language Models", ICML 2024. https://arxiv.org/abs/2402.03898
    """
    skew = _checks.check_skew(skew)
    log_p = tempered_log_probs(teacher_logits, temperature)
    log_q = tempered_log_probs(student_logits, temperature)
    return _scaled(kl_from_log_probs(log_p, log_mixture(log_p, log_q, skew)), temperature, 2)


def skew_reverse_kl(teacher_logits, student_logits, temperature=1.0, skew=0.1):
    """Temperature-scaled skew reverse KL (DistiLLM's SRKL), per position.

    `T^2 * KL(q || a q + (1 - a) p)` with `a = skew`

    The reverse KL made bounded (at most `T^2 log(1/a)`) by mixing some of
    the student into the teacher's distribution. `skew = 0` is the reverse KL.

    Args:
        teacher_logits: Tensor `(..., vocab)`.
        student_logits: Tensor `(..., vocab)`.
        temperature: Positive float `T`. Defaults to `1.0`.
        skew: Float `a` in `[0, 1)`. Defaults to `0.1` (the paper's value).

    Returns:
        Float32 tensor `(...)`: one value per position.

    Raises:
        ValueError: If `skew` is not a number in `[0, 1)`.

    References:
        Ko et al., "DistiLLM: Towards Streamlined Distillation for Large
        Language Models", ICML 2024. https://arxiv.org/abs/2402.03898
    """
    skew = _checks.check_skew(skew)
    log_p = tempered_log_probs(teacher_logits, temperature)
    log_q = tempered_log_probs(student_logits, temperature)
    return _scaled(kl_from_log_probs(log_q, log_mixture(log_q, log_p, skew)), temperature, 2)


def total_variation(teacher_logits, student_logits, temperature=1.0):
    """Temperature-scaled total variation distance, per position.

    `T * 1/2 * sum_k |p_k - q_k|`

    Bounded by `T`. Scaled by `T`, not `T^2`: it is linear in `|p - q|`, whose
    gradient with respect to the logits shrinks as `1/T`.

    Args:
        teacher_logits: Tensor `(..., vocab)`.
        student_logits: Tensor `(..., vocab)`.
        temperature: Positive float `T`. Defaults to `1.0`.

    Returns:
        Float32 tensor `(...)`: one value per position.

    References:
        Wen et al., "f-Divergence Minimization for Sequence-Level Knowledge
        Distillation", ACL 2023. https://arxiv.org/abs/2307.15190
    """
    p = tf.exp(tempered_log_probs(teacher_logits, temperature))
    q = tf.exp(tempered_log_probs(student_logits, temperature))
    return _scaled(0.5 * tf.reduce_sum(tf.abs(p - q), axis=-1), temperature, 1)
