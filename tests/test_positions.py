"""Logits with positions: taggers `(batch, length, classes)`, segmentation `(batch, h, w, classes)`.

Every loss is checked against a NumPy reference computed over the counted
positions only.
"""

import numpy as np
import pytest
import tensorflow as tf
from helpers import np_position_losses

from keras_distill import Distiller
from keras_distill import _checks
from keras_distill._keras import keras

VOCABULARY, LENGTH, CLASSES = 12, 6, 5
ALPHA, TEMPERATURE = 0.6, 2.0
IGNORE = -100


def tagger(name, width, seed, dict_inputs=False):
    """A per-token tagger: each position's logits depend on that token only."""
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((LENGTH,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(VOCABULARY, width, name=f"{name}_embedding")(tokens)
    x = keras.layers.Dense(width, activation="relu", name=f"{name}_hidden")(x)
    logits = keras.layers.Dense(CLASSES, name=f"{name}_logits")(x)
    if dict_inputs:
        mask = keras.Input((LENGTH,), dtype="int32", name="padding_mask")
        return keras.Model({"token_ids": tokens, "padding_mask": mask}, logits, name=name)
    return keras.Model(tokens, logits, name=name)


def segmenter(name, width, seed, size=8):
    keras.utils.set_random_seed(seed)
    image = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(image)
    logits = keras.layers.Conv2D(CLASSES, 1, name=f"{name}_logits")(x)
    return keras.Model(image, logits, name=name)


def token_data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, VOCABULARY, size=(n, LENGTH)).astype("int32")
    labels = (tokens % CLASSES).astype("int32")
    lengths = rng.integers(2, LENGTH + 1, size=n)
    padding = (np.arange(LENGTH)[None, :] < lengths[:, None]).astype("int32")
    tokens = tokens * padding
    return tokens, labels, padding


def compiled(distiller, **kwargs):
    options = dict(optimizer=keras.optimizers.SGD(0.1), alpha=ALPHA, temperature=TEMPERATURE)
    options.update(kwargs)
    distiller.compile(**options)
    return distiller


def evaluate(distiller, x, y=None, **kwargs):
    return distiller.evaluate(x, y, batch_size=16, verbose=0, return_dict=True, **kwargs)


def logits_of(model, x):
    return model.predict(x, verbose=0, batch_size=64).astype(np.float64)


def assert_close(got, expected):
    for name in ("student_loss", "distillation_loss", "loss"):
        np.testing.assert_allclose(got[name], expected[name], rtol=2e-5, atol=1e-6, err_msg=name)


def test_tagger_losses_average_over_weighted_positions_only():
    teacher, student = tagger("teacher", 16, 1), tagger("student", 4, 2)
    tokens, labels, padding = token_data()
    distiller = compiled(Distiller(student=student, teacher=teacher))
    got = evaluate(distiller, tokens, labels, sample_weight=padding.astype("float32"))
    expected = np_position_losses(
        logits_of(teacher, tokens), logits_of(student, tokens), labels, padding, ALPHA, TEMPERATURE
    )
    assert_close(got, expected)
    unweighted = np_position_losses(
        logits_of(teacher, tokens),
        logits_of(student, tokens),
        labels,
        np.ones_like(padding),
        ALPHA,
        TEMPERATURE,
    )
    assert abs(unweighted["loss"] - expected["loss"]) > 1e-3  # the padding does matter here


def test_label_mask_value_takes_positions_out_of_every_term():
    teacher, student = tagger("teacher", 16, 1), tagger("student", 4, 2)
    tokens, labels, padding = token_data()
    labels = np.where(padding > 0, labels, IGNORE).astype("int32")
    distiller = compiled(Distiller(student=student, teacher=teacher, label_mask_value=IGNORE))
    got = evaluate(distiller, tokens, labels)
    expected = np_position_losses(
        logits_of(teacher, tokens),
        logits_of(student, tokens),
        labels,
        np.ones_like(padding),
        ALPHA,
        TEMPERATURE,
    )
    assert_close(got, expected)


def test_padding_mask_input_weighs_positions_and_junk_in_padding_changes_nothing():
    teacher = tagger("teacher", 16, 1, dict_inputs=True)
    student = tagger("student", 4, 2, dict_inputs=True)
    tokens, labels, padding = token_data()
    x = {"token_ids": tokens, "padding_mask": padding}
    distiller = compiled(
        Distiller(student=student, teacher=teacher, padding_mask_input="padding_mask")
    )
    got = evaluate(distiller, x, labels)
    expected = np_position_losses(
        logits_of(teacher, x), logits_of(student, x), labels, padding, ALPHA, TEMPERATURE
    )
    assert_close(got, expected)
    junk_tokens = np.where(
        padding > 0, tokens, np.random.default_rng(5).integers(1, 12, tokens.shape)
    )
    junk_labels = np.where(padding > 0, labels, (labels + 1) % CLASSES)
    junk = evaluate(
        distiller, {"token_ids": junk_tokens.astype("int32"), "padding_mask": padding}, junk_labels
    )
    assert_close(junk, got)


def test_segmentation_with_ignore_label_and_one_hot_labels_agree():
    teacher, student = segmenter("teacher", 8, 1), segmenter("student", 2, 2)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(8, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, CLASSES, size=(8, 8, 8)).astype("int32")
    labels[:, :2] = 255  # an unlabelled band, as in segmentation masks
    distiller = compiled(Distiller(student=student, teacher=teacher, label_mask_value=255))
    got = evaluate(distiller, images, labels)
    reference_labels = np.where(labels == 255, -1, labels)
    expected = np_position_losses(
        logits_of(teacher, images),
        logits_of(student, images),
        reference_labels,
        np.ones(labels.shape),
        ALPHA,
        TEMPERATURE,
    )
    assert_close(got, expected)
    one_hot = np.eye(CLASSES, dtype="float32")[np.where(labels == 255, 0, labels)]
    one_hot[labels == 255] = 255.0  # a one-hot row of the mask value is missing
    assert_close(evaluate(distiller, images, one_hot), expected)


def test_accuracy_counts_counted_positions_only():
    teacher, student = tagger("teacher", 16, 1), tagger("student", 4, 2)
    tokens, labels, padding = token_data()
    distiller = compiled(Distiller(student=student, teacher=teacher), metrics=["accuracy"])
    got = evaluate(distiller, tokens, labels, sample_weight=padding.astype("float32"))
    predicted = logits_of(student, tokens).argmax(-1)
    counted = padding > 0
    expected = (predicted == labels)[counted].mean()
    assert abs((predicted == labels).mean() - expected) > 1e-3  # padding would change it
    np.testing.assert_allclose(got["accuracy"], expected, rtol=1e-6)


def test_a_batch_of_padding_only_adds_zero_loss():
    teacher, student = tagger("teacher", 16, 1), tagger("student", 4, 2)
    tokens, labels, _ = token_data(n=8)
    before = [w.copy() for w in student.get_weights()]
    distiller = compiled(Distiller(student=student, teacher=teacher))
    history = distiller.fit(
        tokens, labels, sample_weight=np.zeros(labels.shape, "float32"), batch_size=8, verbose=0
    )
    for name in ("loss", "student_loss", "distillation_loss"):
        assert history.history[name] == [0.0], name
    for old, new in zip(before, student.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_per_example_sample_weights_broadcast_over_positions():
    teacher, student = tagger("teacher", 16, 1), tagger("student", 4, 2)
    tokens, labels, _ = token_data()
    per_example = np.linspace(0.5, 2.0, len(tokens)).astype("float32")
    distiller = compiled(Distiller(student=student, teacher=teacher))
    got = evaluate(distiller, tokens, labels, sample_weight=per_example)
    expected = np_position_losses(
        logits_of(teacher, tokens),
        logits_of(student, tokens),
        labels,
        np.broadcast_to(per_example[:, None], labels.shape),
        ALPHA,
        TEMPERATURE,
    )
    assert_close(got, expected)


@pytest.mark.parametrize("loss", ["soft_ce", "mse", "dkd"])
def test_every_distillation_loss_runs_per_position(loss):
    teacher, student = tagger("teacher", 16, 1), tagger("student", 4, 2)
    tokens, labels, padding = token_data()
    distiller = compiled(Distiller(student=student, teacher=teacher), distillation_loss=loss)
    result = evaluate(distiller, tokens, labels, sample_weight=padding.astype("float32"))
    assert np.isfinite(result["loss"]) and result["distillation_loss"] > 0


def fit_weights(jit_compile, dataset):
    teacher, student = tagger("teacher", 16, 1), tagger("student", 4, 2)
    distiller = compiled(Distiller(student=student, teacher=teacher), jit_compile=jit_compile)
    history = distiller.fit(dataset, epochs=2, verbose=0, shuffle=False)
    return student.get_weights(), history.history["loss"]


def test_xla_and_graph_mode_and_numpy_and_tf_data_agree():
    tokens, labels, padding = token_data(n=32)
    weights = padding.astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((tokens, labels, weights)).batch(16)
    graph, graph_loss = fit_weights(False, dataset)
    xla, xla_loss = fit_weights(True, dataset)
    np.testing.assert_allclose(graph_loss, xla_loss, rtol=1e-5)
    for a, b in zip(graph, xla):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    teacher, student = tagger("teacher", 16, 1), tagger("student", 4, 2)
    distiller = compiled(Distiller(student=student, teacher=teacher))
    history = distiller.fit(
        tokens, labels, sample_weight=weights, batch_size=16, epochs=2, verbose=0, shuffle=False
    )
    np.testing.assert_allclose(history.history["loss"], graph_loss, rtol=1e-5)


def test_shared_classes_compares_the_first_classes_of_padded_vocabularies():
    keras.utils.set_random_seed(3)
    tokens, labels, _ = token_data()
    teacher = tagger("teacher", 16, 1)
    padded = keras.Model(
        teacher.inputs, keras.layers.Dense(CLASSES + 3, name="padded")(teacher.layers[-2].output)
    )
    student = tagger("student", 4, 2)
    with pytest.raises(ValueError, match=r"classes to be compared \(5 vs 8\)"):
        Distiller(student=student, teacher=padded)
    distiller = compiled(Distiller(student=student, teacher=padded, shared_classes=CLASSES))
    got = evaluate(distiller, tokens, labels)
    expected = np_position_losses(
        logits_of(padded, tokens)[..., :CLASSES],
        logits_of(student, tokens),
        labels,
        np.ones(labels.shape),
        ALPHA,
        TEMPERATURE,
    )
    assert_close(got, expected)


def test_a_padded_vocabulary_mismatch_names_shared_classes():
    with pytest.raises(ValueError, match=r"\(50257 vs 50304\).*pass `shared_classes=50257`"):
        _checks.check_class_counts((None, 16, 50257), (None, 16, 50304))


def test_labels_outside_the_classes_are_refused_with_the_value():
    teacher, student = tagger("teacher", 16, 1), tagger("student", 4, 2)
    tokens, labels, _ = token_data()
    labels[3, 2] = CLASSES + 4
    distiller = compiled(Distiller(student=student, teacher=teacher))
    with pytest.raises(ValueError, match=r"class indices in \[0, 4\].*values from 0 to 9"):
        distiller.fit(tokens, labels, verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices((tokens, labels)).batch(16).repeat(2)
    good = tf.data.Dataset.from_tensor_slices((tokens, labels % CLASSES)).batch(16)
    distiller.fit(good, verbose=0)
    with pytest.raises(ValueError, match=r"row 20 of the batch holds 9"):
        distiller.fit(dataset.skip(1), verbose=0)


def test_sample_weight_of_the_wrong_shape_is_refused():
    teacher, student = tagger("teacher", 16, 1), tagger("student", 4, 2)
    tokens, labels, _ = token_data()
    distiller = compiled(Distiller(student=student, teacher=teacher))
    with pytest.raises(ValueError, match=r"`sample_weight` must have one value per example"):
        distiller.evaluate(tokens, labels, sample_weight=np.ones((16, LENGTH + 1)), verbose=0)


def test_different_sequence_lengths_are_refused():
    teacher = tagger("teacher", 16, 1)
    keras.utils.set_random_seed(0)
    short = keras.Input((LENGTH - 1,), dtype="int32")
    student = keras.Model(
        short,
        keras.layers.Dense(CLASSES)(keras.layers.Embedding(VOCABULARY, 4)(short)),
        name="short",
    )
    with pytest.raises(ValueError, match=r"same positions.*student output shape=\(None, 5, 5\)"):
        Distiller(student=student, teacher=teacher)


def test_padding_mask_outside_zero_one_or_missing_is_refused():
    teacher = tagger("teacher", 16, 1, dict_inputs=True)
    student = tagger("student", 4, 2, dict_inputs=True)
    tokens, labels, padding = token_data()
    distiller = compiled(
        Distiller(student=student, teacher=teacher, padding_mask_input="padding_mask")
    )
    with pytest.raises(ValueError, match=r"padding mask.*\[0, 1\].*Received: padding_mask=2"):
        distiller.fit({"token_ids": tokens, "padding_mask": padding * 2}, labels, verbose=0)
    other = compiled(Distiller(student=student, teacher=teacher, padding_mask_input="mask"))
    with pytest.raises(ValueError, match=r"has none of that name.*padding_mask_input='mask'"):
        other.evaluate({"token_ids": tokens, "padding_mask": padding}, labels, verbose=0)


def test_label_mask_value_must_be_a_whole_number():
    teacher, student = tagger("teacher", 16, 1), tagger("student", 4, 2)
    with pytest.raises(ValueError, match=r"label_mask_value=0.5"):
        Distiller(student=student, teacher=teacher, label_mask_value=0.5)


def test_config_round_trip_keeps_the_position_settings():
    teacher = tagger("teacher", 16, 1, dict_inputs=True)
    student = tagger("student", 4, 2, dict_inputs=True)
    distiller = Distiller(
        student=student,
        teacher=teacher,
        label_mask_value=IGNORE,
        padding_mask_input="padding_mask",
        shared_classes=CLASSES,
    )
    config = distiller.get_config()
    rebuilt = Distiller.from_config(config)
    assert (rebuilt.label_mask_value, rebuilt.padding_mask_input, rebuilt.shared_classes) == (
        IGNORE,
        "padding_mask",
        CLASSES,
    )


def test_the_epoch_loss_is_the_mean_over_every_counted_position_of_the_epoch():
    teacher, student = tagger("teacher", 16, 1), tagger("student", 4, 2)
    tokens, labels, padding = token_data(n=16)
    labels = np.where(padding > 0, labels, IGNORE).astype("int32")
    distiller = compiled(Distiller(student=student, teacher=teacher, label_mask_value=IGNORE))
    got = distiller.evaluate(tokens, labels, batch_size=5, verbose=0, return_dict=True)
    expected = np_position_losses(
        logits_of(teacher, tokens),
        logits_of(student, tokens),
        labels,
        np.ones(labels.shape),
        ALPHA,
        TEMPERATURE,
    )
    assert_close(got, expected)  # batches of 5, 5, 5 and 1 rows with different counts
