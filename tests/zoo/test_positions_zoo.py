"""Models whose outputs have positions: keras_hub causal LMs (GPT-2, Llama with grouped-query
attention), a keras_hub BERT token tagger, and a U-Net-style segmentation model.

Each: the masked loss equals a NumPy reference over the counted positions,
junk in padded positions changes no loss, fit and evaluate run on NumPy and
`tf.data`, and XLA agrees with graph mode.
"""

import numpy as np
import pytest
import tensorflow as tf
import zoo_checks
from helpers import np_position_losses
from helpers import tiny_gpt2

from keras_distill import AttentionMatch
from keras_distill import Distiller
from keras_distill import FeatureMatch
from keras_distill._keras import keras

VOCABULARY, LENGTH, TAGS, CLASSES = 96, 16, 5, 4
ALPHA, TEMPERATURE = 0.5, 2.0
IGNORE = -100


def causal_lm(hub, family, layers, hidden, name, heads=2, kv_heads=None):
    seed = len(name) + layers
    if family == "GPT2":  # No dropout: XLA and graph mode draw different dropout masks.
        return tiny_gpt2(hub, VOCABULARY, LENGTH, layers, hidden, heads, seed, name, dropout=0.0)
    keras.utils.set_random_seed(seed)
    backbone = hub.models.LlamaBackbone(
        vocabulary_size=VOCABULARY,
        num_layers=layers,
        num_query_heads=heads,
        num_key_value_heads=kv_heads,
        hidden_dim=hidden,
        intermediate_dim=2 * hidden,
        name=f"{name}_backbone",
    )
    return hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None, name=name)


# family: (teacher layers, hidden, heads, kv heads), (student ...)
PAIRS = {
    "GPT2": ((2, 32, 4, None), (1, 16, 2, None)),
    "Llama": ((2, 32, 4, 2), (1, 16, 2, 1)),
}


def lm_pair(hub, family):
    (t_layers, t_hidden, t_heads, t_kv), (s_layers, s_hidden, s_heads, s_kv) = PAIRS[family]
    teacher = causal_lm(hub, family, t_layers, t_hidden, "teacher", t_heads, t_kv)
    student = causal_lm(hub, family, s_layers, s_hidden, "student", s_heads, s_kv)
    return teacher, student


def lm_batch(n=16, seed=0, junk_seed=None):
    """`(x, y, sample_weight)` as keras_hub's CausalLMPreprocessor yields them: right-padded
    tokens, labels shifted by one, weights = the labels' padding mask. With `junk_seed`,
    padded positions hold random tokens instead of 0."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, VOCABULARY, size=(n, LENGTH + 1)).astype("int32")
    lengths = rng.integers(4, LENGTH + 2, size=(n, 1))
    mask = (np.arange(LENGTH + 1)[None] < lengths).astype("int32")
    filler = 0
    if junk_seed is not None:
        filler = np.random.default_rng(junk_seed).integers(1, VOCABULARY, size=tokens.shape)
    tokens = np.where(mask > 0, tokens, filler).astype("int32")
    x = {"token_ids": tokens[:, :-1], "padding_mask": mask[:, :-1]}
    return x, tokens[:, 1:], mask[:, 1:].astype("float32")


def compiled(distiller, **kwargs):
    distiller.compile(
        optimizer=keras.optimizers.Adam(1e-3), alpha=ALPHA, temperature=TEMPERATURE, **kwargs
    )
    return distiller


def evaluate(distiller, x, y, sample_weight=None):
    return distiller.evaluate(
        x, y, sample_weight=sample_weight, batch_size=8, verbose=0, return_dict=True
    )


def logits_of(model, x):
    return np.asarray(model.predict(x, batch_size=8, verbose=0), np.float64)


def assert_losses(got, expected, rtol=2e-5):
    for name in ("student_loss", "distillation_loss", "loss"):
        np.testing.assert_allclose(got[name], expected[name], rtol=rtol, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("family", sorted(PAIRS))
def test_causal_lm_loss_is_the_reference_over_real_tokens(hub, family, record):
    teacher, student = lm_pair(hub, family)
    x, y, weights = lm_batch()
    distiller = compiled(Distiller(student=student, teacher=teacher))
    got = evaluate(distiller, x, y, weights)
    expected = np_position_losses(
        logits_of(teacher, x), logits_of(student, x), y, weights, ALPHA, TEMPERATURE
    )
    assert_losses(got, expected)
    junk_x, junk_y, _ = lm_batch(junk_seed=7)
    assert np.any(junk_x["token_ids"] != x["token_ids"])
    assert_losses(evaluate(distiller, junk_x, junk_y, weights), got)
    record(f"{family}CausalLM", "per-token loss")


@pytest.mark.parametrize("family", sorted(PAIRS))
def test_causal_lm_hidden_state_and_attention_matches_skip_padding(hub, family, record):
    teacher, student = lm_pair(hub, family)
    layers = lambda count: [f"transformer_layer_{i}/self_attention" for i in range(count)]  # noqa: E731
    distiller = compiled(
        Distiller(
            student=student,
            teacher=teacher,
            feature_matches=[FeatureMatch("transformer_layer_0", "transformer_layer_1")],
            attention_matches=AttentionMatch.uniform(layers(1), layers(2), loss="kl"),
        )
    )
    x, y, weights = lm_batch()
    history = distiller.fit(x, y, sample_weight=weights, batch_size=8, epochs=1, verbose=0)
    names = ["mse_transformer_layer_0", "attention_kl_transformer_layer_0_self_attention"]
    for name in names:
        assert np.isfinite(history.history[name][0]) and history.history[name][0] > 0, name
    clean = evaluate(distiller, x, y, weights)
    junk_x, junk_y, _ = lm_batch(junk_seed=3)
    junk = evaluate(distiller, junk_x, junk_y, weights)
    for name in names + ["loss"]:
        np.testing.assert_allclose(junk[name], clean[name], rtol=1e-5, atol=1e-6, err_msg=name)
    record(f"{family}CausalLM", "hidden-state and attention matches")


@pytest.mark.slow  # XLA on positions is in the default tier through tests/test_positions.py.
def test_causal_lm_trains_alike_on_numpy_tf_data_and_xla(hub, record):
    x, y, weights = lm_batch(n=16)
    dataset = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(8)
    losses = {}
    for run, (data, jit) in {
        "numpy": (None, False),
        "tf.data": (dataset, False),
        "xla": (dataset, True),
    }.items():
        teacher, student = lm_pair(hub, "GPT2")
        distiller = compiled(Distiller(student=student, teacher=teacher), jit_compile=jit)
        if data is None:
            history = distiller.fit(
                x, y, sample_weight=weights, batch_size=8, epochs=2, verbose=0, shuffle=False
            )
        else:
            history = distiller.fit(data, epochs=2, verbose=0)
        losses[run] = history.history["loss"]
    assert losses["numpy"][1] < losses["numpy"][0]
    np.testing.assert_allclose(losses["tf.data"], losses["numpy"], rtol=1e-5)
    np.testing.assert_allclose(losses["xla"], losses["numpy"], rtol=1e-5)
    record("GPT2CausalLM", "fit: NumPy, tf.data, XLA")


def test_causal_lm_student_exports_with_parity_at_every_position(hub, tmp_path, record):
    _, student = lm_pair(hub, "GPT2")
    x, _, _ = lm_batch(n=4)
    reports = zoo_checks.exports(student, x, tmp_path, int8=False)
    assert reports["float32"].max_abs_diff <= zoo_checks.FLOAT32_MAX_DIFF
    assert np.shape(reports["float32"].keras_outputs) == (4, LENGTH, VOCABULARY)
    record("GPT2CausalLM", "float32 .tflite, every position")


def bert_tagger(hub, layers, hidden, heads, name):
    keras.utils.set_random_seed(layers + hidden)
    backbone = hub.models.BertBackbone(
        vocabulary_size=VOCABULARY,
        num_layers=layers,
        num_heads=heads,
        hidden_dim=hidden,
        intermediate_dim=2 * hidden,
        max_sequence_length=LENGTH,
        name=f"{name}_backbone",
    )
    inputs = {
        "token_ids": keras.Input((LENGTH,), dtype="int32", name="token_ids"),
        "segment_ids": keras.Input((LENGTH,), dtype="int32", name="segment_ids"),
        "padding_mask": keras.Input((LENGTH,), dtype="int32", name="padding_mask"),
    }
    hidden_states = backbone(inputs)["sequence_output"]
    tags = keras.layers.Dense(TAGS, name=f"{name}_tags")(hidden_states)
    return keras.Model(inputs, tags, name=name)


def test_bert_token_tagger_with_ignored_labels(hub, record):
    teacher = bert_tagger(hub, 2, 32, 4, "teacher")
    student = bert_tagger(hub, 1, 16, 2, "student")
    x, _, _ = lm_batch()
    x = {**x, "segment_ids": np.zeros_like(x["token_ids"])}
    tags = (x["token_ids"] % TAGS).astype("int32")
    labels = np.where(x["padding_mask"] > 0, tags, IGNORE).astype("int32")
    distiller = compiled(
        Distiller(
            student=student,
            teacher=teacher,
            label_mask_value=IGNORE,
            padding_mask_input="padding_mask",
        ),
        metrics=["accuracy"],
    )
    got = evaluate(distiller, x, labels)
    expected = np_position_losses(
        logits_of(teacher, x),
        logits_of(student, x),
        labels,
        x["padding_mask"],
        ALPHA,
        TEMPERATURE,
    )
    assert_losses(got, expected)
    counted = labels != IGNORE
    accuracy = (logits_of(student, x).argmax(-1) == labels)[counted].mean()
    np.testing.assert_allclose(got["accuracy"], accuracy, rtol=1e-6)
    history = distiller.fit(x, labels, batch_size=8, epochs=2, verbose=0)
    assert history.history["loss"][1] < history.history["loss"][0]
    record("BertBackbone token tagger", "per-token loss, ignored labels")


def unet(name, width, seed, size=16):
    """A small U-Net: two downsamplings, skip connections, per-pixel logits."""
    keras.utils.set_random_seed(seed)
    image = keras.Input((size, size, 3))
    down1 = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(image)
    down2 = keras.layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu")(down1)
    bottom = keras.layers.Conv2D(4 * width, 3, strides=2, padding="same", activation="relu")(down2)
    up2 = keras.layers.UpSampling2D()(bottom)
    up2 = keras.layers.Concatenate()([up2, down2])
    up2 = keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu")(up2)
    up1 = keras.layers.Concatenate()([keras.layers.UpSampling2D()(up2), down1])
    logits = keras.layers.Conv2D(CLASSES, 1, name=f"{name}_logits")(up1)
    return keras.Model(image, logits, name=name)


def test_unet_segmentation_with_void_pixels(tmp_path, record):
    teacher, student = unet("teacher", 16, 1), unet("student", 4, 2)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(16, 16, 16, 3)).astype("float32")
    masks = rng.integers(0, CLASSES, size=(16, 16, 16)).astype("int32")
    masks[:, :, :3] = 255  # void border, as in segmentation data sets
    distiller = compiled(Distiller(student=student, teacher=teacher, label_mask_value=255))
    got = evaluate(distiller, images, masks)
    expected = np_position_losses(
        logits_of(teacher, images),
        logits_of(student, images),
        np.where(masks == 255, -1, masks),
        np.ones(masks.shape),
        ALPHA,
        TEMPERATURE,
    )
    assert_losses(got, expected)
    dataset = tf.data.Dataset.from_tensor_slices((images, masks)).batch(8)
    history = distiller.fit(dataset, epochs=2, verbose=0)
    assert history.history["loss"][1] < history.history["loss"][0]
    reports = zoo_checks.exports(student, images[:4], tmp_path, int8=False)
    assert np.shape(reports["float32"].keras_outputs) == (4, 16, 16, CLASSES)
    record("U-Net segmentation", "per-pixel loss, void label, .tflite")
