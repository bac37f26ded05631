"""Checks every zoo model goes through: fit, reload, float32 and int8 `.tflite`."""

import numpy as np
import tensorflow as tf

from keras_distill import Distiller
from keras_distill._keras import keras
from keras_distill.compression.export import export_tflite

FLOAT32_MAX_DIFF = 1e-3


def fit(student, teacher, x, y, jit_compile, **matches):
    """Distils for one epoch; every logged loss must be finite. Returns the history."""
    distiller = Distiller(student=student, teacher=teacher, **matches)
    distiller.compile(
        optimizer=keras.optimizers.Adam(1e-3), alpha=0.5, temperature=2.0, jit_compile=jit_compile
    )
    history = distiller.fit(x, y, epochs=1, batch_size=8, verbose=0).history
    for name, values in history.items():
        assert np.all(np.isfinite(values)), (name, values)
    return distiller, history


def outputs(model, x):
    """The model's outputs on `x` as a flat list of arrays."""
    return [np.asarray(value) for value in tf.nest.flatten(model(x, training=False))]


def reloads(model, x, tmp_path, custom_objects=None):
    """Saves `model` as `.keras`, loads it, and compares outputs."""
    path = tmp_path / "student.keras"
    model.save(path)
    loaded = keras.models.load_model(path, custom_objects=custom_objects)
    for before, after in zip(outputs(model, x), outputs(loaded, x)):
        np.testing.assert_allclose(before, after, atol=1e-5)
    return loaded


def exports(model, x, tmp_path, int8=True):
    """float32 (and int8) `.tflite` files of `model`; every output is compared.

    float32 must agree to `FLOAT32_MAX_DIFF`; int8 within a fifth of the
    outputs' spread (random weights give flat logits, so top-1 is not asked).
    Returns the reports by mode.
    """
    reports = {
        "float32": export_tflite(
            model, tmp_path / "f32.tflite", sample_inputs=x, max_abs_diff_threshold=FLOAT32_MAX_DIFF
        )
    }
    if int8:
        reports["int8"] = export_tflite(
            model,
            tmp_path / "int8.tflite",
            quantization="int8",
            representative_data=x,
            sample_inputs=x,
        )
        keras_outputs = reports["int8"].keras_outputs
        arrays = keras_outputs.values() if isinstance(keras_outputs, dict) else [keras_outputs]
        spread = max(float(np.ptp(array)) for array in arrays)
        assert reports["int8"].max_abs_diff <= 0.2 * spread + 1e-3, (
            reports["int8"].max_abs_diff,
            spread,
        )
    for report in reports.values():
        assert report.num_samples == len(next(iter(x.values())) if isinstance(x, dict) else x)
    return reports
