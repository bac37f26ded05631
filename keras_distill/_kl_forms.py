"""The forward KL's three numerical forms, and the choice of one for a batch of float32 logits.

`T^2 * KL(p_t^T || p_s^T)` (see `losses.distillation_kl`) runs in

- `FLOAT32`: `log_softmax` in float32, for finite logits spread enough at
  every position (`(max(z) - min(z)) / T >= 1`);
- `FLAT_FLOAT32`: `log1p(E_p[expm1(-c)])` in float32, for finite logits of a
  smaller range at `T <= 1` (untrained language models), which keeps nearly
  equal distributions exact;
- `FLOAT64`: otherwise (higher temperatures, masked classes), exact for `-inf`
  logits, with the quadratic expansion where the KL is tiny.

Each form has its gradients written out: `T (p_s - p_t)` for the student's
logits and `T p_t (log p_t - log p_s - KL)` for the teacher's (the float64
form's quadratic expansion has its own, `float64_gradients`), so that no form
computes its value twice or differentiates through its float64 graph.
"""

import functools
from typing import NamedTuple

import tensorflow as tf

from keras_distill import divergences

HIGH_T_SCALE = 1e-4
"""Below this `max |z - mean(z)| / T`, the KL's quadratic expansion is used."""
FLOAT32_RANGE = 1.0
"""From this `(max(z) - min(z)) / T` at every position (and finite logits), the KL runs in
float32 (then `max |z - mean(z)| / T >= 0.5`)."""
FLOAT32_TEMPERATURE = 1.0
"""Up to this temperature, finite logits of a smaller range (untrained language models) also
run in float32, in the form that keeps nearly equal distributions exact."""
FLAT_RANGE = 20.0
"""Below this `(max(z) - min(z)) / T` at every position, that form cannot overflow
(`exp(2 * 20)` is far below float32's largest value)."""

FLOAT32, FLAT_FLOAT32, FLOAT64 = 0, 1, 2


def choose(teacher, student, temperature):
    """Which form computes the KL of these float32 logits (one for the whole batch)."""
    # A row sum is finite exactly when the row is (or overflows: then float64, still exact).
    finite = tf.reduce_all(
        tf.math.is_finite(tf.reduce_sum(teacher, -1) + tf.reduce_sum(student, -1))
    )
    scale = tf.maximum(logit_range(teacher), logit_range(student)) / temperature
    spread_enough = tf.reduce_all(scale >= FLOAT32_RANGE)
    flat_in_float32 = (temperature <= FLOAT32_TEMPERATURE) & tf.reduce_all(scale < FLAT_RANGE)
    return tf.where(
        finite & spread_enough,
        FLOAT32,
        tf.where(finite & flat_in_float32, FLAT_FLOAT32, FLOAT64),
    )


def values(form, teacher, student, temperature32, temperature64):
    """`T^2 * KL` per example in `form` (a tensor, from `choose`)."""
    return _in_form(
        form, (float32_kl, flat_kl, float64_kl), teacher, student, temperature32, temperature64
    )


def gradients(form, teacher, student, temperature32, temperature64):
    """`(d/dz_t, d/dz_s)` of `T^2 * KL` in `form`, per unit of upstream gradient."""
    functions = (float32_gradients, flat_gradients, float64_gradients)
    return _in_form(form, functions, teacher, student, temperature32, temperature64)


def values_and_student_gradients(form, teacher, student, temperature32, temperature64):
    """`(T^2 * KL, d/dz_s per unit of upstream gradient)` in `form`, computed together.

    For a training step, where the teacher's gradient is not needed: the
    student's gradient reuses the value's intermediates.
    """
    functions = (
        functools.partial(float32_kl, student_gradient=True),
        functools.partial(flat_kl, student_gradient=True),
        functools.partial(float64_kl, student_gradient=True),
    )
    return _in_form(form, functions, teacher, student, temperature32, temperature64)


def _in_form(form, functions, teacher, student, temperature32, temperature64):
    """`functions[form](teacher, student, T)`, for the float32, flat and float64 forms."""
    float32, flat, float64 = functions
    return tf.switch_case(
        form,
        [
            lambda: float32(teacher, student, temperature32),
            lambda: flat(teacher, student, temperature32),
            lambda: float64(teacher, student, temperature64),
        ],
    )


def float32_kl(teacher, student, temperature, student_gradient=False):
    """`T^2 * KL(p || q)` of finite logits whose tempered range is at least `FLOAT32_RANGE`;
    with `student_gradient`, also `T (q - p)`."""
    log_p_teacher, log_p_student, p_teacher = _float32_log_probs(teacher, student, temperature)
    kl = tf.reduce_sum(p_teacher * (log_p_teacher - log_p_student), axis=-1) * temperature**2
    if not student_gradient:
        return kl
    return kl, temperature * (tf.exp(log_p_student) - p_teacher)


def float32_gradients(teacher, student, temperature):
    """`(d/dz_t, d/dz_s)` of `float32_kl`, per unit of upstream gradient."""
    log_p_teacher, log_p_student, p_teacher = _float32_log_probs(teacher, student, temperature)
    log_ratio = log_p_teacher - log_p_student
    kl = tf.reduce_sum(p_teacher * log_ratio, axis=-1, keepdims=True)
    teacher_gradient = temperature * p_teacher * (log_ratio - kl)
    return teacher_gradient, temperature * (tf.exp(log_p_student) - p_teacher)


def _float32_log_probs(teacher, student, temperature):
    """`(log p_t, log p_s, p_t)` of the tempered logits, in float32."""
    log_p_teacher = tf.nn.log_softmax(teacher / temperature, axis=-1)
    log_p_student = tf.nn.log_softmax(student / temperature, axis=-1)
    return log_p_teacher, log_p_student, tf.exp(log_p_teacher)


def centred_difference(teacher, student, temperature):
    """`(p_t, -c)`: `c = d - E_p[d]` with `d = (z_t - z_s) / T`, centred on its mean first."""
    p_teacher = tf.nn.softmax(teacher / temperature, axis=-1)
    difference = (teacher - student) / temperature
    difference -= tf.reduce_mean(difference, axis=-1, keepdims=True)
    negated = tf.reduce_sum(p_teacher * difference, axis=-1, keepdims=True) - difference
    return p_teacher, negated


def flat_kl(teacher, student, temperature, student_gradient=False):
    """`T^2 * KL(p || q)` of finite logits spread by less than `FLAT_RANGE`, in float32;
    with `student_gradient`, also `T (q - p)` in the form of `flat_gradients`.

    `KL = log E_p[exp(-c)]` with `c = d - E_p[d]` and `d = (z_t - z_s) / T`
    centred on its mean (the KL ignores constant shifts), computed as
    `log1p(E_p[expm1(-c)])`: nearly equal distributions keep their digits
    instead of cancelling in `log p - log q`. Here `|c| < 2 * FLAT_RANGE`, so
    `exp` is safe.
    """
    p_teacher, _, shifted, mean = _flat_parts(teacher, student, temperature)
    kl = tf.math.log1p(mean[..., 0]) * temperature**2
    if not student_gradient:
        return kl
    return kl, _flat_student_gradient(p_teacher, shifted, mean, temperature)


def flat_gradients(teacher, student, temperature):
    """`(d/dz_t, d/dz_s)` of `flat_kl`: `T p_t c` and `T (p_s - p_t)`."""
    p_teacher, negated, shifted, mean = _flat_parts(teacher, student, temperature)
    student_gradient = _flat_student_gradient(p_teacher, shifted, mean, temperature)
    return -temperature * p_teacher * negated, student_gradient


def _flat_parts(teacher, student, temperature):
    """`(p_t, -c, expm1(-c), m = E_p[expm1(-c)])`, the intermediates of `flat_kl`."""
    p_teacher, negated = centred_difference(teacher, student, temperature)
    shifted = tf.math.expm1(negated)
    mean = tf.reduce_sum(p_teacher * shifted, axis=-1, keepdims=True)
    return p_teacher, negated, shifted, mean


def _flat_student_gradient(p_teacher, shifted, mean, temperature):
    """`T (p_s - p_t) = T p_t (expm1(-c) - m) / (1 + m)`, which keeps its digits where the
    two are nearly equal."""
    return (shifted - mean) * (p_teacher * (temperature / (1.0 + mean)))


def float64_gradients(teacher, student, temperature):
    """`(d/dz_t, d/dz_s)` of `float64_kl`, per unit of upstream gradient, in float32.

    Exact form: `T p (r - KL)` with `r = log p - log q` (0 where `p = 0`), and
    `T (q - p)`. Quadratic form `V = 1/2 sum p c^2`: `p c + p (c^2 / 2 - V) / T`
    (through `c` and through `p`) and `-p c`.
    """
    parts = _float64_parts(teacher, student, temperature)
    temperature, p_teacher, centred = parts.temperature, parts.p_teacher, parts.centred
    log_ratio = tf.where(p_teacher > 0.0, parts.log_p_teacher - parts.log_p_student, 0.0)
    kl = (parts.exact / temperature**2)[..., None]
    exact = temperature * p_teacher * (log_ratio - kl)
    quadratic = p_teacher * centred
    quadratic += p_teacher * (0.5 * tf.square(centred) - parts.quadratic[..., None]) / temperature
    teacher_gradient = tf.where(parts.use_quadratic[..., None], quadratic, exact)
    return tf.cast(teacher_gradient, tf.float32), _float64_student_gradient(parts)


def float64_kl(teacher, student, temperature, student_gradient=False):
    """`T^2 * KL(p || q)` in float64, exact for `-inf` logits, quadratic where tiny; with
    `student_gradient`, also its gradient for the student's logits (`float64_gradients`)."""
    parts = _float64_parts(teacher, student, temperature)
    kl = tf.cast(tf.where(parts.use_quadratic, parts.quadratic, parts.exact), tf.float32)
    if not student_gradient:
        return kl
    return kl, _float64_student_gradient(parts)


class _Float64Parts(NamedTuple):
    temperature: tf.Tensor
    log_p_teacher: tf.Tensor
    log_p_student: tf.Tensor
    p_teacher: tf.Tensor
    exact: tf.Tensor  # T^2 KL, per row.
    centred: tf.Tensor  # c = d - E_p[d], d = z_t - z_s (0 where a logit is not finite).
    quadratic: tf.Tensor  # V = 1/2 sum p c^2, per row.
    use_quadratic: tf.Tensor  # Per row: finite logits spread by less than HIGH_T_SCALE * T.


def _float64_parts(teacher, student, temperature):
    """The intermediates of `float64_kl` and `float64_gradients`, in float64."""
    teacher = tf.cast(teacher, tf.float64)
    student = tf.cast(student, tf.float64)
    temperature = tf.cast(temperature, tf.float64)
    log_p_teacher = divergences.tempered_log_probs(teacher, temperature)
    log_p_student = divergences.tempered_log_probs(student, temperature)
    exact = divergences.kl_from_log_probs(log_p_teacher, log_p_student) * temperature**2
    # The expansion needs finite logits: rows with a masked (-inf) entry use
    # the exact form, and the expansion sees zeros there (no NaN in its terms).
    finite = tf.math.is_finite(teacher) & tf.math.is_finite(student)
    teacher = tf.where(finite, teacher, tf.zeros_like(teacher))
    student = tf.where(finite, student, tf.zeros_like(student))
    p_teacher = tf.exp(log_p_teacher)
    difference = teacher - student
    centred = difference - tf.reduce_sum(p_teacher * difference, axis=-1, keepdims=True)
    quadratic = 0.5 * tf.reduce_sum(p_teacher * tf.square(centred), axis=-1)
    scale = tf.maximum(spread(teacher), spread(student)) / temperature
    use_quadratic = (scale < HIGH_T_SCALE) & tf.reduce_all(finite, axis=-1)
    return _Float64Parts(
        temperature,
        log_p_teacher,
        log_p_student,
        p_teacher,
        exact,
        centred,
        quadratic,
        use_quadratic,
    )


def _float64_student_gradient(parts):
    """`T (q - p)` (exact) or `-p c` (quadratic), in float32."""
    exact = parts.temperature * (tf.exp(parts.log_p_student) - parts.p_teacher)
    gradient = tf.where(parts.use_quadratic[..., None], -parts.p_teacher * parts.centred, exact)
    return tf.cast(gradient, tf.float32)


def logit_range(logits):
    """`max(z) - min(z)` per example."""
    return tf.reduce_max(logits, axis=-1) - tf.reduce_min(logits, axis=-1)


def spread(logits):
    """`max |z - mean(z)|` per example: the size of the logits that softmax sees."""
    centred = logits - tf.reduce_mean(logits, axis=-1, keepdims=True)
    return tf.reduce_max(tf.abs(centred), axis=-1)
