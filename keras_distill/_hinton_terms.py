"""The Hinton mix's two terms of a training step, with the student's gradient made alongside.

`hard_and_soft(labels, teacher_logits, student_logits, T)` returns, per
example or position, the hard-label cross-entropy `H(y, q_s)` and the forward
KL `T^2 KL(p_t^T || q_s^T)`, equal to `losses.hard_label_cross_entropy` and
`losses.distillation_kl` (the same numerical forms, `_kl_forms`). Their
gradients with respect to the student's logits, `q_s - y` and
`T (q_s^T - p_t^T)`, are made in the forward pass from the value's own
intermediates: the cross-entropy kernel returns its gradient, and the KL's
form computes its gradient from its softmaxes. Nothing flows to the teacher's
logits or the labels (the `Distiller`'s teacher is frozen). Without fusion (on
CPU, every elementwise op is one pass over `(batch, positions, classes)`),
this reads the logits far fewer times than the two losses differentiated
separately. `hard_and_top_k_soft` does the same for a batch of top-k teacher
logits (`losses.top_k_distillation_kl`); at `T = 1` its KL reuses the
cross-entropy's softmax and reads the student's row no further.

In both, the cross-entropy kernel is the last reader of the student's logits:
their other readers run first, and the gradient reads them not at all (the
top-k terms make their tempered softmax in the forward pass for that, outside
XLA, which plans its buffers itself), so that TensorFlow may write the
kernel's gradient into the logits' buffer instead of a new `(batch, positions,
classes)` one. `benchmarks/lm_step.py` counts the fresh memory of a step: the
top-k step now touches as much as the student trained alone (the full-row
step's count did not change).

Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015.
https://arxiv.org/abs/1503.02531
"""

import tensorflow as tf

from keras_distill import _kl_forms
from keras_distill import _positions
from keras_distill import losses
from keras_distill._add_at import add_at
from keras_distill._xla import compiled_by_xla


def hard_and_soft(labels, teacher_logits, student_logits, temperature):
    """`(H(y, q_s), T^2 KL(p_t^T || q_s^T))` per example or position; student gradient only.

    Args:
        labels: Class indices shaped as the positions, or label rows shaped as
            the logits.
        teacher_logits: Float32 tensor `(..., classes)`.
        student_logits: Float32 tensor `(..., classes)`.
        temperature: Positive float32 scalar `T`.
    """
    student_logits = tf.cast(student_logits, tf.float32)
    return _terms(
        _labels(labels, student_logits),
        tf.stop_gradient(tf.cast(teacher_logits, tf.float32)),
        student_logits,
        tf.cast(temperature, tf.float32),
        tf.cast(temperature, tf.float64),
    )


def hard_and_top_k_soft(labels, teacher_values, teacher_indices, student_logits, temperature):
    """`hard_and_soft` for the teacher's top-k logits `teacher_values` at `teacher_indices`."""
    student_logits = tf.cast(student_logits, tf.float32)
    return _top_k_terms(
        _labels(labels, student_logits),
        tf.stop_gradient(tf.cast(teacher_values, tf.float32)),
        tf.cast(teacher_indices, tf.int32),
        student_logits,
        tf.cast(temperature, tf.float32),
    )


@tf.custom_gradient
def _terms(labels, teacher, student, temperature32, temperature64):
    form = _kl_forms.choose(teacher, student, temperature32)
    soft, soft_gradient = _kl_forms.values_and_student_gradients(
        form, teacher, student, temperature32, temperature64
    )
    with tf.control_dependencies([soft, soft_gradient]):  # The logits' last reader.
        hard, hard_gradient = _cross_entropy(labels, student)

    def gradient(upstream_hard, upstream_soft):
        student_gradient = (
            upstream_hard[..., None] * hard_gradient + upstream_soft[..., None] * soft_gradient
        )
        return None, None, student_gradient, None, None

    return (hard, soft), gradient


@tf.custom_gradient
def _top_k_terms(labels, values, indices, student, temperature):
    sparse = labels.shape.rank < student.shape.rank
    kept_logits = tf.gather(student, indices, batch_dims=indices.shape.rank - 1)
    # Outside XLA the tempered softmax is made here, so that the gradient never reads the
    # student's logits: the cross-entropy kernel, their last reader, then writes its gradient
    # into their buffer instead of a new one (XLA plans its buffers itself).
    keep_softmax = not compiled_by_xla()
    nothing = tf.zeros([0], tf.float32)  # Stands for the softmax where it is not made.

    def tempered():
        scaled = student / temperature
        log_normalizer = tf.reduce_logsumexp(scaled, axis=-1)
        if not keep_softmax:
            return log_normalizer, nothing
        return log_normalizer, tf.exp(scaled - log_normalizer[..., None])

    if sparse:
        # At T = 1 the cross-entropy's softmax is the KL's: logsumexp(z_s) = H + z_s[y] and
        # q_s = (q_s - y) + y, so the student's row is read no further.
        at_one = tf.equal(temperature, 1.0)
        label_logits = tf.gather(student, labels, batch_dims=labels.shape.rank)
        tempered_normalizer, q_student = tf.cond(
            at_one, lambda: (tf.zeros_like(label_logits), nothing), tempered
        )
        earlier_readers = [kept_logits, label_logits, tempered_normalizer, q_student]
    else:
        tempered_normalizer, q_student = tempered()
        earlier_readers = [kept_logits, tempered_normalizer, q_student]
    with tf.control_dependencies(earlier_readers):
        hard, hard_gradient = _cross_entropy(labels, student)
    if sparse:
        log_normalizer = tf.where(at_one, hard + label_logits, tempered_normalizer)
    else:
        log_normalizer = tempered_normalizer
    soft, p_teacher = losses._top_k_kl_parts(values, kept_logits, temperature, log_normalizer)

    def gradient(upstream_hard, upstream_soft):
        amounts = (upstream_soft * temperature)[..., None]

        def from_the_tempered_softmax():
            if keep_softmax:
                q_rows = tf.reshape(q_student, tf.shape(hard_gradient))
            else:
                q_rows = tf.exp(student / temperature - log_normalizer[..., None])
            return upstream_hard[..., None] * hard_gradient + q_rows * amounts

        if not sparse:
            rows = from_the_tempered_softmax()
            return None, None, None, add_at(rows, indices, -p_teacher * amounts), None

        def from_the_cross_entropy():
            return hard_gradient * (upstream_hard + upstream_soft)[..., None]

        # Only the dense rows depend on T: the sparse values are added once, after the branch.
        rows = tf.cond(at_one, from_the_cross_entropy, from_the_tempered_softmax)
        label_amounts = tf.where(at_one, amounts, tf.zeros_like(amounts))
        classes = tf.concat([labels[..., None], indices], axis=-1)
        sparse_amounts = tf.concat([label_amounts, -p_teacher * amounts], axis=-1)
        return None, None, None, add_at(rows, classes, sparse_amounts), None

    return (hard, soft), gradient


def _cross_entropy(labels, student):
    """`(H(y, q_s), q_s - y)` from TensorFlow's fused kernel, which returns both."""
    shape = tf.shape(student)
    rows = tf.reshape(student, [-1, shape[-1]])
    if labels.shape.rank == student.shape.rank:
        labels = tf.reshape(tf.cast(labels, tf.float32), [-1, shape[-1]])
        value, gradient = tf.raw_ops.SoftmaxCrossEntropyWithLogits(features=rows, labels=labels)
    else:
        labels = tf.reshape(labels, [-1])
        value, gradient = tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(
            features=rows, labels=labels
        )
    return tf.reshape(value, shape[:-1]), tf.reshape(gradient, shape)


def _labels(labels, logits):
    """Class indices `(...)` as int32, or label rows as given (see `hard_label_cross_entropy`)."""
    labels = tf.convert_to_tensor(labels)
    if _positions.is_one_hot(labels, logits):
        return labels
    return tf.reshape(tf.cast(labels, tf.int32), tf.shape(logits)[:-1])
