import os

import numpy as np

import keras_distill
from keras_distill import _keras


def test_generation_follows_the_environment():
    legacy = os.environ.get("TF_USE_LEGACY_KERAS", "0") in ("1", "true", "yes")
    assert _keras.IS_LEGACY is legacy
    assert keras_distill.GENERATION == ("tf_keras" if legacy else "keras3")
    assert _keras.keras.__name__ == ("tf_keras" if legacy else "keras")


def test_distiller_is_a_model_of_the_active_generation():
    assert issubclass(keras_distill.Distiller, _keras.keras.Model)


def test_no_module_imports_keras_on_its_own():
    package_dir = os.path.dirname(keras_distill.__file__)
    offenders = []
    for root, _, files in os.walk(package_dir):
        for name in files:
            if not name.endswith(".py") or name == "_keras.py":
                continue
            with open(os.path.join(root, name)) as source:
                for line in source:
                    stripped = line.strip()
                    if stripped.startswith(
                        ("import keras", "import tf_keras", "from keras ", "from tf_keras")
                    ):
                        offenders.append(f"{name}: {stripped}")
    assert offenders == []


def test_every_private_keras_api_still_exists():
    """Fails loudly when a Keras release renames a private API the package uses."""
    keras = _keras.keras
    inputs = keras.Input((4, 8))
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")
    model = keras.Model(inputs, attention(inputs, inputs))
    assert "mha" in [layer.name for layer in _keras.all_layers(model)]
    assert callable(getattr(attention, _keras.ATTENTION_METHOD))
    query = keras.ops.ones((1, 4, 2, 4)) if not _keras.IS_LEGACY else None
    if query is not None:
        output, scores = _keras.compute_attention(
            getattr(attention, _keras.ATTENTION_METHOD), query, query, query, None, False
        )
        assert tuple(scores.shape) == (1, 2, 4, 4)
        assert hasattr(attention, "_flash_attention")
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    model.fit(np.ones((2, 4, 8)), np.ones((2, 4, 8)), verbose=0)
    metric_names = [m.name for m in _keras.compiled_metric_objects(model)]
    assert metric_names, "the compiled metrics are not found"
    assert set(_keras.PRIVATE_APIS) >= {
        "Layer._flatten_layers",
        "MultiHeadAttention._compute_attention",
    }


def test_private_flash_attention_flag_is_still_read():
    plain = _keras.keras.layers.MultiHeadAttention(2, 4)
    assert _keras.uses_flash_attention(plain) is False
    if not _keras.IS_LEGACY:  # Keras 3 stores the choice in `_flash_attention`.
        flash = _keras.keras.layers.MultiHeadAttention(2, 4, flash_attention=True)
        assert _keras.uses_flash_attention(flash) is True
