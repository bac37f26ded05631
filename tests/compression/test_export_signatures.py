"""`export_tflite` of models with several named inputs and outputs (dicts and lists)."""

import json

import numpy as np
import pytest
from helpers import assert_message

from keras_distill._keras import keras
from keras_distill.compression.export import export_tflite
from keras_distill.compression.litert import load_interpreter
from keras_distill.compression.litert import run_tflite
from keras_distill.compression.litert import set_inputs
from keras_distill.compression.litert import tflite_latency

CLASSES = 3


def two_input_model(as_dict):
    """Float features and integer token ids in; logits and a score out."""
    keras.utils.set_random_seed(0)
    features = keras.Input((4,), name="features")
    tokens = keras.Input((None,), dtype="int32", name="token_ids")
    embedded = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(10, 3)(tokens))
    hidden = keras.layers.Dense(8, activation="relu")(
        keras.layers.Concatenate()([features, embedded])
    )
    logits = keras.layers.Dense(CLASSES, name="logits")(hidden)
    score = keras.layers.Dense(1, name="score")(hidden)
    if as_dict:
        return keras.Model(
            {"features": features, "token_ids": tokens}, {"logits": logits, "score": score}
        )
    return keras.Model([features, tokens], [logits, score])


def inputs(n=48, length=5, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "features": rng.normal(size=(n, 4)).astype("float32"),
        "token_ids": rng.integers(1, 10, size=(n, length)).astype("int32"),
    }


def keras_outputs(model, x):
    outputs = model(x if isinstance(model.input, dict) else [x["features"], x["token_ids"]])
    if isinstance(outputs, dict):
        return {name: np.asarray(value) for name, value in outputs.items()}
    return {"logits": np.asarray(outputs[0]), "score": np.asarray(outputs[1])}


@pytest.mark.parametrize("as_dict", [True, False], ids=["dict", "list"])
@pytest.mark.parametrize("quantization, max_diff", [(None, 1e-5), ("int8", 0.3)])
def test_signature_keeps_the_keras_names(tmp_path, as_dict, quantization, max_diff):
    model = two_input_model(as_dict)
    x = inputs()
    data = x if as_dict else [x["features"], x["token_ids"]]
    path = tmp_path / "model.tflite"
    report = export_tflite(
        model,
        path,
        quantization=quantization,
        representative_data=data if quantization else None,
        sample_inputs=data,
    )
    interpreter = load_interpreter(path)
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["features", "token_ids"], "outputs": ["logits", "score"]}
    }
    # Independent run of the file by its signature, as Android's runSignature does.
    runner = interpreter.get_signature_runner("serving_default")
    direct = runner(features=x["features"], token_ids=x["token_ids"])
    expected = keras_outputs(model, x)
    assert sorted(report.keras_outputs) == ["logits", "score"]
    for name in ("logits", "score"):
        np.testing.assert_allclose(report.keras_outputs[name], expected[name], atol=1e-6)
        np.testing.assert_allclose(report.tflite_outputs[name], direct[name], atol=1e-6)
        difference = np.abs(expected[name] - direct[name]).max()
        assert report.per_output[name]["max_abs_diff"] == pytest.approx(difference, abs=1e-6)
    assert report.max_abs_diff == max(s["max_abs_diff"] for s in report.per_output.values())
    assert report.per_output["score"]["top1_agreement"] is None
    assert report.max_abs_diff <= max_diff
    assert report.input_dtype == "features: float32, token_ids: int32"
    assert report.output_dtype == "logits: float32, score: float32"
    assert set(json.loads(report.to_json())["per_output"]) == {"logits", "score"}
    assert "output score" in str(report)


def test_int8_calibration_reads_a_dataset_of_dicts(tmp_path):
    import tensorflow as tf

    model = two_input_model(True)
    x = inputs()
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros(48, "int32"))).batch(16)
    report = export_tflite(
        model, tmp_path / "m.tflite", quantization="int8", representative_data=dataset
    )
    assert report.num_samples == 48
    assert report.top1_agreement >= 0.8


def test_run_tflite_by_signature_and_its_errors(tmp_path):
    model = two_input_model(True)
    x = inputs()
    path = tmp_path / "m.tflite"
    export_tflite(model, path, sample_inputs=x)
    outputs = run_tflite(path, x, batch_size=7)
    expected = keras_outputs(model, x)
    np.testing.assert_allclose(outputs["logits"], expected["logits"], atol=1e-5)
    with pytest.raises(ValueError) as error:
        run_tflite(path, x["features"])
    assert_message(
        error,
        "signature 'serving_default'",
        "`x` must be a dict of arrays",
        "['features', 'token_ids']",
        "Received: x=ndarray",
    )
    with pytest.raises(ValueError, match=r"Received: signature_key='serve'$"):
        run_tflite(path, x, signature_key="serve")


def test_latency_sets_every_input_of_a_file_with_several(tmp_path):
    model = two_input_model(True)
    x = inputs()
    path = tmp_path / "m.tflite"
    export_tflite(model, path, sample_inputs=x)
    # The rows timed are the ones set: outputs after invoke() equal the model's on rows 0-2.
    interpreter = load_interpreter(path)
    set_inputs(interpreter, x, batch_size=3)
    interpreter.invoke()
    runner = interpreter.get_signature_runner("serving_default")
    details = runner.get_output_details()
    expected = keras_outputs(model, {name: array[:3] for name, array in x.items()})
    for name in ("logits", "score"):
        got = interpreter.get_tensor(details[name]["index"])
        np.testing.assert_allclose(got, expected[name], atol=1e-5)
    timing = tflite_latency(path, x, batch_size=3, repeats=3)
    assert timing["batch_size"] == 3 and 0 < timing["min_ms"] <= timing["median_ms"]
    with pytest.raises(ValueError, match=r"keyed by its input names \['features', 'token_ids'\]"):
        tflite_latency(path, x["features"])


def test_missing_input_and_noise_errors(tmp_path):
    model = two_input_model(True)
    with pytest.raises(ValueError) as error:
        export_tflite(model, tmp_path / "m.tflite", sample_inputs={"features": np.ones((2, 4))})
    assert_message(
        error,
        "`sample_inputs` lacks the model's inputs ['token_ids']",
        "['features', 'token_ids']",
        "Received: sample_inputs with keys ['features']",
    )
    with pytest.raises(ValueError, match=r"Received: input 'token_ids' of shape \(None, None\)"):
        export_tflite(model, tmp_path / "m.tflite")
    assert not (tmp_path / "m.tflite").exists()


class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(CLASSES)

    def call(self, features):
        return self.dense(features)


def test_subclassed_model_exports_through_a_view_shaped_like_the_samples(tmp_path):
    model = Subclassed(name="sub")
    x = inputs()["features"]
    model(x[:1])
    with pytest.raises(ValueError, match=r"Received: model='sub' without `model.input` and "):
        export_tflite(model, tmp_path / "m.tflite")
    report = export_tflite(model, tmp_path / "m.tflite", sample_inputs=x)
    np.testing.assert_allclose(report.tflite_outputs, np.asarray(model(x)), atol=1e-5)
    assert load_interpreter(tmp_path / "m.tflite").get_signature_list()["serving_default"][
        "inputs"
    ] == ["input"]
