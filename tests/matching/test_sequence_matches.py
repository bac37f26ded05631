"""Matches on sequence models whose shapes are unknown until called (as keras_hub's)."""

import numpy as np
import pytest
from helpers import assert_message

from keras_distill import AttentionMatch
from keras_distill import Distiller
from keras_distill import FeatureMatch
from keras_distill._keras import IS_LEGACY
from keras_distill._keras import keras
from keras_distill.matching.adapters import FeatureAdapter

CLASSES = 3
VOCABULARY = 10


def token_data(n=32, length=6, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, VOCABULARY, size=(n, length)).astype("int32")
    tokens[::2, length - 2 :] = 0  # padding
    return tokens, (tokens[:, 0] % CLASSES).astype("int32")


def encoder(prefix, width, heads, seed):
    """A functional encoder whose sequence axis is `None` (any length)."""
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(VOCABULARY, width, name=f"{prefix}_embedding")(tokens)
    x = x + keras.layers.MultiHeadAttention(heads, 4, name=f"{prefix}_mha")(x, x)
    x = keras.layers.Dense(width, name=f"{prefix}_hidden")(x)
    pooled = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(
        tokens, keras.layers.Dense(CLASSES, name=f"{prefix}_logits")(pooled), name=prefix
    )


class SubclassedEncoder(keras.Model):
    """An encoder whose layers cannot tell their shapes before a call."""

    def __init__(self, width, heads, **kwargs):
        super().__init__(**kwargs)
        self.embedding = keras.layers.Embedding(VOCABULARY, width, name="sub_embedding")
        self.attention = keras.layers.MultiHeadAttention(heads, 4, name="sub_mha")
        self.hidden = keras.layers.Dense(width, name="sub_hidden")
        self.pool = keras.layers.GlobalAveragePooling1D()
        self.logits = keras.layers.Dense(CLASSES, name="sub_logits")

    def call(self, tokens):
        x = self.embedding(tokens)
        x = self.hidden(x + self.attention(x, x))
        return self.logits(self.pool(x))


def compiled(distiller):
    distiller.compile(optimizer=keras.optimizers.Adam(0.01), alpha=0.5, temperature=2.0)
    return distiller


def test_adapter_with_an_unknown_sequence_length_projects_channels_only():
    adapter = FeatureAdapter((None, 12))
    features = np.ones((2, 5, 8), "float32")
    adapter.build((None, None, 8))
    assert tuple(adapter(features).shape) == (2, 5, 12)
    assert adapter.projection.get_weights()[0].shape == (8, 12)


def test_adapter_resizes_only_to_a_known_length():
    adapter = FeatureAdapter((7, 12), project=False)
    assert tuple(adapter(np.ones((2, 5, 12), "float32")).shape) == (2, 7, 12)


def test_feature_match_on_sequences_of_unknown_length():
    tokens, y = token_data()
    student, teacher = encoder("s", 8, 2, 1), encoder("t", 12, 4, 2)
    distiller = compiled(
        Distiller(
            student=student, teacher=teacher, feature_matches=[FeatureMatch("s_hidden", "t_hidden")]
        )
    )
    history = distiller.fit(tokens, y, epochs=2, batch_size=16, verbose=0).history
    assert np.all(np.isfinite(history["mse_s_hidden"]))
    assert distiller.adapters["mse_s_hidden"].get_weights()[0].shape == (8, 12)
    # Trained on length 6, the student still runs on any length.
    assert tuple(distiller.student(tokens[:, :4]).shape) == (32, CLASSES)


def test_attention_and_feature_matches_on_a_subclassed_student():
    tokens, y = token_data()
    teacher = encoder("t", 12, 4, 2)
    student = SubclassedEncoder(8, 2, name="sub")
    student(tokens[:1])
    distiller = compiled(
        Distiller(
            student=student,
            teacher=teacher,
            attention_matches=[AttentionMatch("sub_mha", "t_mha", loss="kl")],
            feature_matches=[FeatureMatch("sub_hidden", "t_hidden")],
        )
    )
    history = distiller.fit(tokens, y, epochs=2, batch_size=16, verbose=0).history
    assert np.all(np.isfinite(history["attention_kl_sub_mha"]))
    assert np.all(np.isfinite(history["mse_sub_hidden"]))
    assert distiller.adapters["mse_sub_hidden"].get_weights()[0].shape == (8, 12)
    assert "attention_kl_sub_mha" not in distiller.adapters


@pytest.mark.skipif(IS_LEGACY, reason="tf_keras has no flash attention")
def test_flash_attention_is_refused_with_the_layer_and_the_way_out():
    teacher = encoder("t", 12, 4, 2)
    keras.utils.set_random_seed(1)
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(VOCABULARY, 8)(tokens)
    x = keras.layers.MultiHeadAttention(2, 4, flash_attention=True, name="s_mha")(x, x)
    pooled = keras.layers.GlobalAveragePooling1D()(x)
    student = keras.Model(tokens, keras.layers.Dense(CLASSES)(pooled))
    with pytest.raises(ValueError) as error:
        Distiller(
            student=student, teacher=teacher, attention_matches=[AttentionMatch("s_mha", "t_mha")]
        )
    assert_message(
        error,
        "'s_mha' (MultiHeadAttention)",
        "flash attention",
        "`keras.config.disable_flash_attention()`",
        "`flash_attention=False`",
        "Received: student_layer='s_mha'",
    )
