"""Models and data shared by the tests (fixtures that use them live in conftest.py)."""

import os

import numpy as np
import tensorflow as tf

from keras_distill._keras import keras

NUM_FEATURES = 8
NUM_CLASSES = 3
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def subprocess_env(**extra):
    """The environment for a fresh Python process that imports this checkout's keras_distill.

    Without `PYTHONPATH`, a process started in another folder (or a script in
    `tests/`) would import whichever keras_distill is installed.
    """
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, **extra)


def assert_message(error, *pieces):
    """Asserts that every one of `pieces` occurs, as plain text, in an error message.

    `error` is what `pytest.raises` returns, an exception or the text itself. The
    pieces are what a reader needs (the argument, the received value, the fix), so
    that rewording the rest of a message breaks no test.
    """
    assert pieces, "name at least one piece of the message"
    if hasattr(error, "value") and isinstance(error.value, BaseException):
        error = error.value
    text = str(error)
    missing = [piece for piece in pieces if piece not in text]
    assert not missing, f"{missing!r} not in the message:\n{text}"


def tiny_gpt2(
    hub, vocabulary, length, layers=2, hidden=32, heads=2, seed=0, name=None, **backbone_options
):
    """A keras_hub `GPT2CausalLM` with random weights and no preprocessor.

    `intermediate_dim` defaults to `2 * hidden`; `backbone_options` go to
    `GPT2Backbone` (e.g. `dropout=0.0`, `intermediate_dim=...`). `name` names the
    model and its backbone (`{name}_backbone`). Seeded with `seed` first, through
    Keras 3 (keras_hub builds Keras 3 models under both generations).
    """
    import keras as keras3

    keras3.utils.set_random_seed(seed)
    backbone_options.setdefault("intermediate_dim", 2 * hidden)
    if name is not None:
        backbone_options.setdefault("name", f"{name}_backbone")
    backbone = hub.models.GPT2Backbone(
        vocabulary_size=vocabulary,
        num_layers=layers,
        num_heads=heads,
        hidden_dim=hidden,
        max_sequence_length=length,
        **backbone_options,
    )
    names = {} if name is None else {"name": name}
    return hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None, **names)


def make_data(num_examples=128, seed=0):
    """Separable 3-class data: the class is decided by the signs of two features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_examples, NUM_FEATURES)).astype("float32")
    y = ((x[:, 0] > 0).astype("int32") + (x[:, 1] > 0).astype("int32")).astype("int32")
    return x, y


def calls_of(model, method_name):
    """The list that records each call of `model.<method_name>` (a step: one per trace)."""
    calls = []
    method = getattr(model, method_name)

    def counting(data):
        calls.append(method_name)
        return method(data)

    setattr(model, method_name, counting)
    return calls


def make_mlp(units, name, num_classes=NUM_CLASSES, seed=0, final_activation=None):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((NUM_FEATURES,), name=f"{name}_input")
    hidden = keras.layers.Dense(units, activation="relu", name=f"{name}_hidden")(inputs)
    outputs = keras.layers.Dense(num_classes, activation=final_activation, name=f"{name}_logits")(
        hidden
    )
    return keras.Model(inputs, outputs, name=name)


class FillAbove(keras.layers.Layer):
    """Replaces by `value` the logits of rows whose first feature exceeds 50."""

    def __init__(self, value, **kwargs):
        super().__init__(**kwargs)
        self.value = value

    def call(self, inputs):
        features, logits = inputs
        broken = tf.reshape(features[:, 0] > 50.0, [-1, 1])
        return tf.where(broken, tf.fill(tf.shape(logits), self.value), logits)


def broken_teacher(value, name="broken_teacher", final_activation=None):
    """A teacher whose outputs become `value` (NaN, Inf) where the first feature exceeds 50."""
    base = make_mlp(16, "base", seed=1, final_activation=final_activation)
    inputs = keras.Input((NUM_FEATURES,))
    return keras.Model(inputs, FillAbove(value)([inputs, base(inputs)]), name=name)


def make_half_sparse_mlp():
    """`make_mlp(16, "student", seed=2)` with every other column of its first kernel zero."""
    student = make_mlp(16, "student", seed=2)
    weights = student.get_weights()
    weights[0][:, ::2] = 0.0
    student.set_weights(weights)
    return student


def reference_ece(probabilities, labels, num_bins=15):
    """ECE written independently: explicit bin edges, (lo, hi] membership."""
    n = len(labels)
    confidence = np.max(probabilities, axis=1)
    prediction = np.argmax(probabilities, axis=1)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if lo == 0.0:
            inside |= confidence == 0.0
        if inside.any():
            accuracy = np.mean(prediction[inside] == labels[inside])
            total += inside.sum() / n * abs(accuracy - confidence[inside].mean())
    return total


def reference_softmax(logits):
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def np_log_softmax(z):
    """Log-softmax over the last axis, in float64 (`-inf` entries give `-inf`)."""
    z = np.asarray(z, np.float64)
    top = np.max(np.where(np.isfinite(z), z, -np.inf), axis=-1, keepdims=True)
    shifted = z - top
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def np_full_row_kl(teacher, student, temperature):
    """`T^2 KL(p_t || q_s)` of full rows, and its student gradient `T (q_s - p_t)` (float64)."""
    log_p = np_log_softmax(np.asarray(teacher, np.float64) / temperature)
    log_q = np_log_softmax(np.asarray(student, np.float64) / temperature)
    p, q = np.exp(log_p), np.exp(log_q)
    with np.errstate(invalid="ignore"):
        terms = np.where(p > 0, p * (log_p - log_q), 0.0)
    return temperature**2 * terms.sum(-1), temperature * (q - p)


def np_position_losses(teacher_logits, student_logits, labels, weights, alpha, temperature):
    """Reference: Hinton's loss per position, means over positions of weight > 0.

    `labels` equal to a negative value (e.g. -100) take a position out.
    """
    classes = teacher_logits.shape[-1]
    t = np.reshape(teacher_logits, (-1, classes))
    s = np.reshape(student_logits, (-1, classes))
    labels = np.reshape(labels, -1)
    w = np.reshape(weights, -1).astype(np.float64) * (labels >= 0)
    log_p, log_q = np_log_softmax(t / temperature), np_log_softmax(s / temperature)
    kd = temperature**2 * (np.exp(log_p) * (log_p - log_q)).sum(-1)
    hard = -np_log_softmax(s)[np.arange(len(s)), np.where(labels >= 0, labels, 0)]
    total = max(w.sum(), 1e-30)
    return {
        "student_loss": (w * hard).sum() / total,
        "distillation_loss": (w * kd).sum() / total,
        "loss": (w * ((1 - alpha) * hard + alpha * kd)).sum() / total,
    }
