"""`_hinton_terms`: both terms of a training step and the student's gradient, against NumPy."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import np_full_row_kl
from helpers import np_log_softmax

from keras_distill import _hinton_terms
from keras_distill import _kl_forms

BATCH, POSITIONS, CLASSES = 3, 5, 11


def logits(scale, seed):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(BATCH, POSITIONS, CLASSES)) * scale).astype(np.float32)


def np_hard(labels, student):
    """`H(y, q_s)` and its gradient `q_s - y` (float64), sparse or one-hot labels."""
    log_q = np_log_softmax(student)
    rows = labels if labels.ndim == student.ndim else np.eye(CLASSES)[labels]
    return -(rows * log_q).sum(-1), np.exp(log_q) - rows


def np_expected(labels, teacher, student, temperature, up_hard, up_soft):
    """Both values and the gradient of `sum(up_hard * H + up_soft * KL)` for the student."""
    hard, hard_gradient = np_hard(labels, student)
    soft, soft_gradient = np_full_row_kl(teacher, student, temperature)
    gradient = up_hard[..., None] * hard_gradient + up_soft[..., None] * soft_gradient
    return hard, soft, gradient


def terms_and_gradient(fn, labels, student, up_hard, up_soft, compile_as=None):
    student = tf.constant(student)

    def run(student):
        with tf.GradientTape() as tape:
            tape.watch(student)
            hard, soft = fn(labels, student)
            total = tf.reduce_sum(up_hard * hard + up_soft * soft)
        return hard, soft, tape.gradient(total, student)

    if compile_as == "graph":
        run = tf.function(run)
    elif compile_as == "xla":
        run = tf.function(run, jit_compile=True)
    return [value.numpy() for value in run(student)]


def upstream(seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.1, 1.0, size=(2, BATCH, POSITIONS)).astype(np.float32)


def form_of(teacher, student, temperature):
    return int(_kl_forms.choose(tf.constant(teacher), tf.constant(student), temperature))


# (teacher scale, student scale, T, the KL's form): every form of `_kl_forms`.
FORMS = [
    (3.0, 2.0, 1.0, _kl_forms.FLOAT32),
    (3.0, 2.0, 2.0, _kl_forms.FLOAT32),
    (0.05, 0.04, 1.0, _kl_forms.FLAT_FLOAT32),
    (0.05, 0.04, 4.0, _kl_forms.FLOAT64),
    (0.05, 0.04, 4000.0, _kl_forms.FLOAT64),  # Its quadratic expansion: spread / T < 1e-4.
]


@pytest.mark.parametrize("teacher_scale,student_scale,temperature,form", FORMS)
@pytest.mark.parametrize("one_hot", [False, True])
def test_both_terms_and_the_student_gradient_match_numpy_in_every_form(
    teacher_scale, student_scale, temperature, form, one_hot
):
    teacher, student = logits(teacher_scale, 1), logits(student_scale, 2)
    assert form_of(teacher, student, temperature) == form
    labels = np.random.default_rng(3).integers(0, CLASSES, size=(BATCH, POSITIONS))
    if one_hot:
        labels = np.eye(CLASSES, dtype=np.float32)[labels]
    up_hard, up_soft = upstream(4)
    hard, soft, gradient = terms_and_gradient(
        lambda y, s: _hinton_terms.hard_and_soft(y, teacher, s, temperature),
        labels,
        student,
        up_hard,
        up_soft,
    )
    want_hard, want_soft, want_gradient = np_expected(
        labels, teacher, student, temperature, up_hard, up_soft
    )
    np.testing.assert_allclose(hard, want_hard, rtol=1e-5)
    np.testing.assert_allclose(soft, want_soft, rtol=2e-4, atol=1e-7)
    np.testing.assert_allclose(gradient, want_gradient, rtol=1e-4, atol=1e-7)


def test_a_masked_teacher_class_takes_the_exact_form_and_gives_no_nan():
    teacher, student = logits(3.0, 1), logits(2.0, 2)
    teacher[..., 0] = -np.inf  # A masked vocabulary entry.
    labels = np.random.default_rng(3).integers(1, CLASSES, size=(BATCH, POSITIONS))
    up_hard, up_soft = upstream(4)
    hard, soft, gradient = terms_and_gradient(
        lambda y, s: _hinton_terms.hard_and_soft(y, teacher, s, 1.0), labels, student, *upstream(4)
    )
    want_hard, want_soft, want_gradient = np_expected(
        labels, teacher, student, 1.0, up_hard, up_soft
    )
    assert form_of(teacher, student, 1.0) == _kl_forms.FLOAT64
    np.testing.assert_allclose(hard, want_hard, rtol=1e-5)
    np.testing.assert_allclose(soft, want_soft, rtol=1e-5)
    np.testing.assert_allclose(gradient, want_gradient, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("compile_as", ["graph", "xla"])
def test_compiled_and_xla_steps_give_the_same_terms_and_gradient(compile_as):
    teacher, student = logits(0.05, 1), logits(0.04, 2)  # The flat form, as untrained LMs.
    labels = np.random.default_rng(3).integers(0, CLASSES, size=(BATCH, POSITIONS))
    up_hard, up_soft = upstream(4)
    got = terms_and_gradient(
        lambda y, s: _hinton_terms.hard_and_soft(y, teacher, s, 1.0),
        labels,
        student,
        up_hard,
        up_soft,
        compile_as,
    )
    for value, want in zip(got, np_expected(labels, teacher, student, 1.0, up_hard, up_soft)):
        np.testing.assert_allclose(value, want, rtol=2e-4, atol=1e-7)


def np_top_k_rows(values, indices):
    """The teacher rows a renormalised top-k cache stands for: `-inf` outside the kept classes."""
    rows = np.full(values.shape[:-1] + (CLASSES,), -np.inf)
    np.put_along_axis(rows, indices, values.astype(np.float64), axis=-1)
    return rows


def assert_top_k_terms_match_numpy(temperature, k, compile_as, one_hot=False):
    """The top-k terms and the student's gradient against NumPy on the rows they stand for."""
    teacher, student = logits(3.0, 1), logits(2.0, 2)
    indices = np.argsort(-teacher, axis=-1)[..., :k]
    values = np.take_along_axis(teacher, indices, axis=-1)
    labels = np.random.default_rng(3).integers(0, CLASSES, size=(BATCH, POSITIONS))
    if one_hot:
        labels = np.eye(CLASSES, dtype=np.float32)[labels]
    up_hard, up_soft = upstream(4)
    got = terms_and_gradient(
        lambda y, s: _hinton_terms.hard_and_top_k_soft(y, values, indices, s, temperature),
        labels,
        student,
        up_hard,
        up_soft,
        compile_as,
    )
    want = np_expected(
        labels, np_top_k_rows(values, indices), student, temperature, up_hard, up_soft
    )
    for value, expected in zip(got, want):
        np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("k", [1, 4, CLASSES])
@pytest.mark.parametrize("one_hot", [False, True])
def test_top_k_terms_match_numpy_at_and_away_from_temperature_one(temperature, k, one_hot):
    assert_top_k_terms_match_numpy(temperature, k, "graph", one_hot)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("compile_as", ["eager", "xla"])
def test_top_k_terms_eagerly_and_under_xla_with_the_label_among_the_kept_classes(
    temperature, compile_as
):
    # Every class kept: each label is also one of the kept classes.
    assert_top_k_terms_match_numpy(temperature, CLASSES, compile_as)


def test_no_gradient_reaches_the_teacher_or_the_labels():
    teacher = tf.constant(logits(3.0, 1))
    labels = tf.constant(np.eye(CLASSES, dtype=np.float32)[np.zeros((BATCH, POSITIONS), int)])
    student = tf.constant(logits(2.0, 2))
    with tf.GradientTape() as tape:
        tape.watch([teacher, labels, student])
        hard, soft = _hinton_terms.hard_and_soft(labels, teacher, student, 1.0)
        total = tf.reduce_sum(hard + soft)
    teacher_gradient, label_gradient, student_gradient = tape.gradient(
        total, [teacher, labels, student]
    )
    assert teacher_gradient is None and label_gradient is None
    assert student_gradient is not None


def ops_reading(tensor, operations):
    """The operations that read `tensor` or a reshape of it (the same buffer)."""
    views, readers = {id(tensor)}, []
    for operation in operations:
        if any(id(t) in views for t in operation.inputs):
            readers.append(operation)
            if operation.type in ("Reshape", "Identity"):
                views.update(id(t) for t in operation.outputs)
    return readers


def ancestors(operation):
    """Every operation `operation` waits for, through its inputs and control inputs."""
    pending, seen = [operation], set()
    while pending:
        current = pending.pop()
        for before in [t.op for t in current.inputs] + list(current.control_inputs):
            if before not in seen:
                seen.add(before)
                pending.append(before)
    return seen


def full_rows_terms(labels, values, indices, student, temperature):
    teacher = tf.constant(np_top_k_rows(values, indices), tf.float32)
    teacher = tf.where(tf.math.is_inf(teacher), -1e4, teacher)
    return _hinton_terms.hard_and_soft(labels, teacher, student, temperature)


@pytest.mark.parametrize("terms", ["top_k", "full_rows"])
@pytest.mark.parametrize("one_hot", [False, True])
def test_the_cross_entropy_kernel_is_the_last_reader_of_the_student_logits(terms, one_hot):
    # Then the kernel writes its gradient into the logits' buffer, which nothing reads later:
    # one `(batch, positions, classes)` tensor less per step (benchmarks/lm_step.py, page faults).
    make_terms = _hinton_terms.hard_and_top_k_soft if terms == "top_k" else full_rows_terms
    teacher = logits(3.0, 1)
    indices = np.argsort(-teacher, axis=-1)[..., :4]
    values = np.take_along_axis(teacher, indices, axis=-1)
    labels = np.random.default_rng(3).integers(0, CLASSES, size=(BATCH, POSITIONS))
    if one_hot:
        labels = np.eye(CLASSES, dtype=np.float32)[labels]
    forward_size = []

    @tf.function
    def step(student, temperature):
        with tf.GradientTape() as tape:
            tape.watch(student)
            hard, soft = make_terms(labels, values, indices, student, temperature)
            total = tf.reduce_sum(hard + soft)
        forward_size.append(len(tf.compat.v1.get_default_graph().get_operations()))
        return tape.gradient(total, student)

    graph = step.get_concrete_function(
        tf.TensorSpec((BATCH, POSITIONS, CLASSES)), tf.TensorSpec(())
    ).graph
    operations = graph.get_operations()
    forward, backward = operations[: forward_size[0]], operations[forward_size[0] :]
    student = graph.inputs[0]
    assert ops_reading(student, backward) == []
    readers = ops_reading(student, forward)
    kernels = [op for op in readers if "SoftmaxCrossEntropyWithLogits" in op.type]
    assert len(kernels) == 1
    before_the_kernel = ancestors(kernels[0])
    # IdentityN: `tf.custom_gradient`'s own pass-through of the inputs, which Grappler removes.
    later = [
        op.type
        for op in readers
        if op not in before_the_kernel | {kernels[0]} and op.type != "IdentityN"
    ]
    assert later == []
