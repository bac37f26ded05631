"""`losses.top_k_distillation_kl` against a NumPy full-row KL of the expanded teacher logits."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import np_full_row_kl

from keras_distill import losses

MISSING = -1e4  # The logit a renormalised top-k cache gives the classes it did not keep.


def np_expand(values, indices, num_classes):
    full = np.full(values.shape[:-1] + (num_classes,), MISSING, np.float64)
    np.put_along_axis(full, indices, values.astype(np.float64), axis=-1)
    return full


def top_k_of(logits, k):
    indices = np.argsort(-logits, axis=-1)[..., :k]
    return np.take_along_axis(logits, indices, axis=-1), indices


def value_and_gradient(values, indices, student, temperature):
    student = tf.constant(student, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(student)
        value = losses.top_k_distillation_kl(values, indices, student, temperature)
        total = tf.reduce_sum(value)
    return value.numpy(), tape.gradient(total, student).numpy()


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("k", [1, 4, 11])
def test_top_k_kl_equals_the_full_row_kl_of_expanded_logits(k, temperature):
    rng = np.random.default_rng(k)
    teacher = rng.normal(0, 3, (3, 5, 11)).astype(np.float32)
    student = rng.normal(0, 3, (3, 5, 11)).astype(np.float32)
    values, indices = top_k_of(teacher, k)
    full = np_expand(values, indices, 11)
    expected, expected_gradient = np_full_row_kl(full, student, temperature)
    value, gradient = value_and_gradient(values, indices, student, temperature)
    assert value.shape == (3, 5)
    np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-5 * temperature**2)
    np.testing.assert_allclose(gradient, expected_gradient, atol=1e-6 * max(temperature, 1.0))
    if k == 11:  # Every class kept: the expanded rows are the teacher's own logits.
        plain, _ = np_full_row_kl(teacher, student, temperature)
        np.testing.assert_allclose(value, plain, rtol=1e-5, atol=1e-5 * temperature**2)


def test_top_k_kl_without_positions_and_of_unordered_indices():
    rng = np.random.default_rng(0)
    teacher = rng.normal(0, 2, (6, 9)).astype(np.float32)
    student = rng.normal(0, 2, (6, 9)).astype(np.float32)
    values, indices = top_k_of(teacher, 3)
    order = rng.permuted(np.tile(np.arange(3), (6, 1)), axis=1)  # The order of the kept does
    values = np.take_along_axis(values, order, -1)  # not matter.
    indices = np.take_along_axis(indices, order, -1)
    expected, expected_gradient = np_full_row_kl(np_expand(values, indices, 9), student, 2.0)
    value, gradient = value_and_gradient(values, indices, student, 2.0)
    np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gradient, expected_gradient, atol=1e-6)


def test_masked_classes_of_the_teacher_and_of_the_student():
    values = np.array([[3.0, 1.0, -np.inf], [2.0, 0.5, 0.0], [1.0, 0.0, -1.0]], np.float32)
    indices = np.array([[0, 2, 4], [1, 3, 5], [2, 0, 1]], np.int32)
    student = np.array(
        [
            [0.5, 0.0, -1.0, 2.0, 0.3, -np.inf],  # Masked where the teacher has probability 0.
            [0.0, 1.0, -np.inf, 0.0, -0.5, 0.2],  # Masked outside the kept classes.
            [0.0, -np.inf, 1.0, 0.0, 0.0, 0.0],  # Masked at a kept class: the KL is +inf.
        ],
        np.float32,
    )
    teacher = np.full((3, 6), -np.inf)
    np.put_along_axis(teacher, indices, values.astype(np.float64), axis=-1)
    expected, expected_gradient = np_full_row_kl(teacher, student, 2.0)
    value, gradient = value_and_gradient(values, indices, student, 2.0)
    np.testing.assert_allclose(value[:2], expected[:2], rtol=1e-6)
    assert value[2] == np.inf and expected[2] == np.inf
    assert np.all(np.isfinite(gradient))
    np.testing.assert_allclose(gradient, expected_gradient, atol=1e-6)


def test_the_loss_is_the_distillation_kl_of_the_expanded_rows_in_tensorflow_too():
    rng = np.random.default_rng(3)
    teacher = rng.normal(0, 4, (2, 7, 50)).astype(np.float32)
    student = rng.normal(0, 4, (2, 7, 50)).astype(np.float32)
    values, indices = top_k_of(teacher, 8)
    full = np_expand(values, indices, 50).astype(np.float32)
    np.testing.assert_allclose(
        losses.top_k_distillation_kl(values, indices, student, 1.0).numpy(),
        losses.distillation_kl(full, student, 1.0).numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
