"""The chunked loss equals the loss on whole logits, in value and gradients."""

import numpy as np
import pytest
import tensorflow as tf

from keras_distill import chunked_distillation_loss
from keras_distill import losses


def setup(seed=0, shape=(3, 7), teacher_dim=6, student_dim=4, vocab=11):
    rng = np.random.default_rng(seed)
    return {
        "teacher_hidden": rng.normal(size=(*shape, teacher_dim)),
        "student_hidden": tf.Variable(rng.normal(size=(*shape, student_dim))),
        "teacher_kernel": rng.normal(size=(teacher_dim, vocab)),
        "student_kernel": tf.Variable(rng.normal(size=(student_dim, vocab))),
        "teacher_bias": rng.normal(size=(vocab,)),
        "student_bias": tf.Variable(rng.normal(size=(vocab,))),
        "sample_weight": (rng.random(shape) < 0.7) * rng.uniform(0.5, 2.0, size=shape),
    }


def whole_logits_loss(inputs, divergence, temperature):
    """The reference: all logits at once, NumPy weighted mean of the per-position values."""
    teacher = inputs["teacher_hidden"] @ inputs["teacher_kernel"] + inputs["teacher_bias"]
    student = tf.matmul(inputs["student_hidden"], inputs["student_kernel"])
    student = student + inputs["student_bias"]
    values = tf.cast(losses.get(divergence).per_example(teacher, student, temperature), tf.float64)
    weights = tf.constant(inputs["sample_weight"], tf.float64)
    return tf.reduce_sum(values * weights) / np.sum(inputs["sample_weight"])


def value_and_grads(function, inputs):
    variables = [inputs["student_hidden"], inputs["student_kernel"], inputs["student_bias"]]
    with tf.GradientTape() as tape:
        value = function()
    return float(value), [g.numpy() for g in tape.gradient(value, variables)]


@pytest.mark.parametrize("chunk_size", [1, 4, 5, 21, 64])
@pytest.mark.parametrize("divergence", ["kl", "reverse_kl", "jsd", "skew_reverse_kl", "tv"])
def test_equals_the_whole_logits_loss_and_gradients(divergence, chunk_size):
    inputs = setup()
    expected, expected_grads = value_and_grads(
        lambda: whole_logits_loss(inputs, divergence, 2.0), inputs
    )
    got, grads = value_and_grads(
        lambda: chunked_distillation_loss(
            divergence=divergence, temperature=2.0, chunk_size=chunk_size, **inputs
        ),
        inputs,
    )
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    for grad, reference in zip(grads, expected_grads):
        assert np.all(np.isfinite(grad))
        # The divergences round each position's value (and so its gradient) to float32:
        # entries far below the largest agree to 1e-6 of the largest.
        scale = np.abs(reference).max()
        np.testing.assert_allclose(grad, reference, rtol=1e-6, atol=1e-6 * scale)


def test_in_a_tf_function_with_unknown_positions_and_no_bias():
    inputs = setup(seed=1, shape=(2, 9))
    inputs.pop("teacher_bias")
    inputs.pop("student_bias")
    signature = [
        tf.TensorSpec([None, None, 6], tf.float64),
        tf.TensorSpec([None, None], tf.float64),
    ]

    @tf.function(input_signature=signature)
    def step(teacher_hidden, weights):
        with tf.GradientTape() as tape:
            value = chunked_distillation_loss(
                teacher_hidden,
                inputs["student_hidden"],
                inputs["teacher_kernel"],
                inputs["student_kernel"],
                divergence=losses.GeneralizedJSD(beta=0.2),
                sample_weight=weights,
                chunk_size=4,
            )
        return value, tape.gradient(value, [inputs["student_hidden"], inputs["student_kernel"]])

    value, grads = step(inputs["teacher_hidden"], inputs["sample_weight"])
    teacher = inputs["teacher_hidden"] @ inputs["teacher_kernel"]
    with tf.GradientTape() as tape:
        student = tf.matmul(inputs["student_hidden"], inputs["student_kernel"])
        values = losses.generalized_jsd(teacher, student, beta=0.2)
        weights = tf.constant(inputs["sample_weight"], tf.float32)
        expected = tf.reduce_sum(values * weights) / tf.reduce_sum(weights)
    expected_grads = tape.gradient(expected, [inputs["student_hidden"], inputs["student_kernel"]])
    np.testing.assert_allclose(float(value), float(expected), rtol=1e-5)
    for grad, reference in zip(grads, expected_grads):
        np.testing.assert_allclose(grad, reference, rtol=1e-4, atol=1e-7)


def test_no_counted_position_gives_zero_and_zero_gradients():
    inputs = setup(seed=2)
    inputs["sample_weight"] = np.zeros_like(inputs["sample_weight"])
    value, grads = value_and_grads(lambda: chunked_distillation_loss(**inputs), inputs)
    assert value == 0.0
    assert all(np.all(g == 0.0) for g in grads)


def test_float32_inputs_and_default_weights():
    inputs = setup(seed=3)
    inputs.pop("sample_weight")
    for key in ("student_hidden", "student_kernel", "student_bias"):
        inputs[key] = tf.Variable(tf.cast(inputs[key], tf.float32))
    inputs["sample_weight"] = np.ones((3, 7))
    expected, expected_grads = value_and_grads(lambda: whole_logits_loss(inputs, "kl", 1.0), inputs)
    inputs.pop("sample_weight")
    got, grads = value_and_grads(lambda: chunked_distillation_loss(chunk_size=8, **inputs), inputs)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    for grad, reference in zip(grads, expected_grads):
        assert grad.dtype == np.float32
        np.testing.assert_allclose(grad, reference, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("chunk_size", [0, 2.5, True])
def test_bad_chunk_size(chunk_size):
    inputs = setup()
    with pytest.raises(ValueError, match=r"`chunk_size` must be an integer >= 1"):
        chunked_distillation_loss(chunk_size=chunk_size, **inputs)


def test_gradients_reach_a_keras_head():
    from keras_distill._keras import keras

    rng = np.random.default_rng(4)
    hidden = rng.normal(size=(2, 5, 4)).astype("float32")
    teacher = rng.normal(size=(2, 5, 3)).astype("float32")
    teacher_kernel = rng.normal(size=(3, 9)).astype("float32")
    head = keras.layers.Dense(9)
    head.build((None, 4))
    with tf.GradientTape() as tape:
        whole = losses.distillation_kl(teacher @ teacher_kernel, head(hidden), 2.0)
        whole = tf.reduce_mean(whole)
    expected = tape.gradient(whole, head.trainable_variables)
    with tf.GradientTape() as tape:
        value = chunked_distillation_loss(
            teacher,
            hidden,
            teacher_kernel,
            head.kernel,
            temperature=2.0,
            chunk_size=3,
            student_bias=head.bias,
        )
    grads = tape.gradient(value, head.trainable_variables)
    np.testing.assert_allclose(float(value), float(whole), rtol=1e-5)
    for grad, reference in zip(grads, expected):
        np.testing.assert_allclose(grad, reference, rtol=1e-4, atol=1e-6)
