import json
import os

import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_message
from helpers import make_data
from helpers import make_mlp

import keras_distill
from keras_distill._keras import IS_LEGACY
from keras_distill._keras import keras
from keras_distill.compression import export as export_lib
from keras_distill.compression.export import ParityError
from keras_distill.compression.export import export_tflite


@pytest.fixture(scope="module")
def x():
    return make_data(96, seed=3)[0]


@pytest.fixture(scope="module")
def model():
    return make_mlp(16, "student", seed=2)


def _direct_run(path, x):
    """Runs the file with ai_edge_litert directly, without keras_distill.litert."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(x.shape))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    if detail["dtype"] == np.int8:
        scale, zero = detail["quantization"]
        x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(out["index"])
    if out["dtype"] == np.int8:
        scale, zero = out["quantization"]
        y = (y.astype(np.float32) - zero) * scale
    return y, interpreter


@pytest.mark.parametrize(
    "quantization, max_diff",
    [(None, 1e-5), ("dynamic", 1e-5), ("float16", 1e-2), ("int8", 0.25)],
)
def test_export_parity_every_mode(tmp_path, model, x, quantization, max_diff):
    path = tmp_path / "student.tflite"
    report = export_tflite(
        model,
        path,
        quantization=quantization,
        representative_data=x if quantization == "int8" else None,
        sample_inputs=x,
    )
    assert path.exists()
    assert report.file_size_bytes == os.path.getsize(path)
    assert report.quantization == quantization
    # Independent computation: Keras outputs and a direct LiteRT run.
    keras_outputs = np.asarray(model(x, training=False))
    tflite_outputs, _ = _direct_run(path, x)
    np.testing.assert_allclose(report.keras_outputs, keras_outputs, atol=1e-6)
    np.testing.assert_allclose(report.tflite_outputs, tflite_outputs, atol=1e-6)
    assert report.max_abs_diff == pytest.approx(
        np.abs(keras_outputs - tflite_outputs).max(), abs=1e-6
    )
    agreement = np.mean(keras_outputs.argmax(1) == tflite_outputs.argmax(1))
    assert report.top1_agreement == pytest.approx(agreement)
    assert report.max_abs_diff <= max_diff
    assert report.top1_agreement >= 0.9
    assert report.num_samples == len(x)


def test_int8_weights_and_int8_io(tmp_path, model, x):
    path = tmp_path / "int8.tflite"
    report = export_tflite(model, path, quantization="int8", representative_data=x, int8_io=True)
    _, interpreter = _direct_run(path, x)
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    assert report.input_dtype == "int8" and report.output_dtype == "int8"
    kernels = [
        t
        for t in interpreter.get_tensor_details()
        if len(t["shape"]) == 2 and t["dtype"] == np.int8 and 0 not in t["shape"]
    ]
    assert kernels, "full-integer export must hold int8 weight matrices"
    float_report = export_tflite(model, tmp_path / "float.tflite")
    assert report.file_size_bytes != float_report.file_size_bytes


def test_dynamic_range_quantizes_large_kernels(tmp_path, x):
    big = make_mlp(256, "big", seed=4)  # 8x256 = 2048 weights: above the 1024 threshold
    float_report = export_tflite(big, tmp_path / "f.tflite", sample_inputs=x)
    report = export_tflite(big, tmp_path / "d.tflite", quantization="dynamic", sample_inputs=x)
    assert report.file_size_bytes < float_report.file_size_bytes
    assert report.top1_agreement >= 0.9
    _, interpreter = _direct_run(tmp_path / "d.tflite", x)
    int8_sizes = [
        int(np.prod(t["shape"])) for t in interpreter.get_tensor_details() if t["dtype"] == np.int8
    ]
    assert 8 * 256 in int8_sizes


def test_representative_dataset(tmp_path, model, x):
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros(len(x)))).batch(16)
    report = export_tflite(
        model,
        tmp_path / "m.tflite",
        quantization="int8",
        representative_data=dataset,
        num_samples=32,
    )
    assert report.num_samples == 32
    np.testing.assert_allclose(report.keras_outputs, np.asarray(model(x[:32])), atol=1e-6)


def test_report_table_and_json(tmp_path, model, x):
    report = export_tflite(model, tmp_path / "m.tflite", sample_inputs=x)
    table = str(report)
    for label in ("size bytes", "max |keras - tflite|", "top-1 agreement", "float32"):
        assert label in table
    data = json.loads(report.to_json())
    assert data["file_size_bytes"] == report.file_size_bytes
    assert data["top1_agreement"] == report.top1_agreement
    assert data["passed"] is True
    saved = json.loads(open(report.save_json(tmp_path / "r.json")).read())
    assert saved == data


def test_only_the_student_is_exported(tmp_path, teacher, x):
    student = make_mlp(8, "student", seed=2)
    distiller = keras_distill.Distiller(student=student, teacher=teacher)
    report = export_tflite(distiller, tmp_path / "s.tflite", sample_inputs=x)
    np.testing.assert_allclose(report.keras_outputs, np.asarray(student(x)), atol=1e-6)
    assert report.max_abs_diff < 1e-5
    _, interpreter = _direct_run(tmp_path / "s.tflite", x)
    sizes = sorted(
        int(np.prod(t["shape"]))
        for t in interpreter.get_tensor_details()
        if len(t["shape"]) == 2 and t["shape"][0] != len(x)
    )
    assert 32 * 8 not in sizes  # the teacher's 8x32 kernel is absent
    student_weights = sum(int(np.prod(w.shape)) for w in student.weights)
    teacher_weights = sum(int(np.prod(w.shape)) for w in teacher.weights)
    assert report.file_size_bytes < 4 * (student_weights + teacher_weights) + 4000


def test_parity_threshold_raises_and_writes_nothing(tmp_path, model, x):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"old")
    with pytest.raises(
        ParityError, match=r"max_abs_diff=.* > max_abs_diff_threshold=1e-09"
    ) as info:
        export_tflite(
            model, path, quantization="int8", representative_data=x, max_abs_diff_threshold=1e-9
        )
    assert info.value.report.max_abs_diff > 1e-9
    assert isinstance(info.value, ValueError)
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["m.tflite"]


def test_agreement_threshold(tmp_path, model, x):
    report = export_tflite(model, tmp_path / "m.tflite", sample_inputs=x, min_top1_agreement=1.0)
    assert report.passed


def test_converter_failure_leaves_no_file(tmp_path, model, monkeypatch):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"old")

    def broken(*args, **kwargs):
        raise RuntimeError("converter exploded")

    monkeypatch.setattr(export_lib, "_configure_and_convert", broken)
    with pytest.raises(RuntimeError, match="converter exploded"):
        export_tflite(model, path)
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["m.tflite"]


def test_failure_after_writing_removes_the_temporary_file(tmp_path, model, monkeypatch):
    path = tmp_path / "sub" / "m.tflite"

    def broken(*args, **kwargs):
        assert any(name.startswith(".m.tflite.") for name in os.listdir(tmp_path / "sub"))
        raise RuntimeError("interpreter exploded")

    monkeypatch.setattr(export_lib, "run_tflite", broken)
    with pytest.raises(RuntimeError, match="interpreter exploded"):
        export_tflite(model, path)
    assert os.listdir(tmp_path / "sub") == []


def test_error_int8_without_representative_data(tmp_path, model):
    with pytest.raises(ValueError) as info:
        export_tflite(model, tmp_path / "m.tflite", quantization="int8")
    assert_message(
        info,
        "`quantization='int8'`",
        "needs `representative_data`",
        "pass about 100-500 typical inputs",
        "Received: representative_data=None",
    )
    assert os.listdir(tmp_path) == []


def test_error_unknown_quantization(tmp_path, model):
    with pytest.raises(ValueError) as info:
        export_tflite(model, tmp_path / "m.tflite", quantization="int4")
    assert_message(
        info,
        "`quantization`",
        "[None, 'dynamic', 'float16', 'int8']",
        "Received: quantization='int4'",
    )


def test_error_path_and_int8_io(tmp_path, model):
    with pytest.raises(ValueError) as info:
        export_tflite(model, tmp_path / "m.bin")
    assert str(info.value).startswith(
        "`path` must be a file path ending in '.tflite'. Received: path="
    )
    with pytest.raises(ValueError) as info:
        export_tflite(model, tmp_path / "m.tflite", quantization="dynamic", int8_io=True)
    assert_message(
        info,
        "`int8_io=True`",
        "needs `quantization='int8'`",
        "Received: int8_io=True, quantization='dynamic'",
    )


def test_error_not_a_model(tmp_path):
    with pytest.raises(
        ValueError, match=r"`model` must be a keras.Model .* Received: model=builtins.str"
    ):
        export_tflite("model", tmp_path / "m.tflite")


@pytest.mark.skipif(IS_LEGACY, reason="Model.quantize() exists only in Keras 3")
def test_error_keras_quantized_model(tmp_path, model):
    quantized = keras.models.clone_model(model)
    quantized.set_weights(model.get_weights())
    quantized.quantize("int8")
    with pytest.raises(ValueError) as info:
        export_tflite(quantized, tmp_path / "m.tflite")
    assert_message(
        info,
        "`model` was quantized with Keras's `Model.quantize()`",
        "Export the float model with `quantization='int8'`",
        "Received: model='student' with quantized layers ['student_hidden', 'student_logits']",
    )


def test_corrupted_truncated_and_missing_tflite_files(tmp_path, model):
    from keras_distill.compression.litert import load_interpreter

    path = str(tmp_path / "m.tflite")
    export_tflite(model, path)
    content = open(path, "rb").read()
    truncated = str(tmp_path / "truncated.tflite")
    with open(truncated, "wb") as stream:
        stream.write(content[: len(content) // 3])
    garbage = str(tmp_path / "garbage.tflite")
    with open(garbage, "wb") as stream:
        stream.write(b"not a model" * 10)
    for broken in (truncated, garbage):
        with pytest.raises(ValueError) as info:
            load_interpreter(broken)
        message = str(info.value)
        assert message.startswith("The .tflite file is corrupted or truncated (")
        assert message.endswith(f"Export it again. Received: model={broken!r}")
    with pytest.raises(ValueError) as info:
        load_interpreter(str(tmp_path / "missing.tflite"))
    assert_message(
        info,
        "No .tflite file at this path",
        f"Received: model={str(tmp_path / 'missing.tflite')!r}",
    )


def export_error(model, folder, **kwargs):
    """The message of the `ValueError` that exporting `model` into `folder` raises."""
    with pytest.raises(ValueError) as info:
        export_tflite(model, folder / "m.tflite", **kwargs)
    return str(info.value)


@pytest.mark.parametrize("argument", ["representative_data", "sample_inputs"])
def test_inputs_of_the_wrong_shape_or_with_nan_are_named(tmp_path, model, x, argument):
    assert_message(
        export_error(model, tmp_path, **{argument: x[:, :5]}),
        f"`{argument}`",
        "the model's shape (batch, 8)",
        f"Received: {argument} of shape ({len(x)}, 5)",
    )
    bad = x.copy()
    bad[2, 4] = np.nan
    quantization = "int8" if argument == "representative_data" else None
    assert export_error(model, tmp_path, quantization=quantization, **{argument: bad}).startswith(
        f"`{argument}` contains NaN or Inf values (1 of {len(x)} examples, the first at index 2)."
    )
    assert os.listdir(tmp_path) == []


class SingularValues(keras.layers.Layer):
    """`tf.linalg.svd`, an op TFLite's built-in ops lack."""

    def call(self, inputs):
        values = tf.linalg.svd(tf.reshape(inputs, [-1, 2, 4]), compute_uv=False)
        return tf.reshape(values, [-1, 2])


def test_an_op_tflite_lacks_is_named(tmp_path):
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(3)(SingularValues()(inputs)), name="svd")
    assert_message(
        export_error(model, tmp_path),
        "`model` uses TensorFlow ops that TFLite's built-in ops lack: ['Svd']",
        "tf.lite.OpsSet.SELECT_TF_OPS",
        "Received: model='svd'",
    )
    assert os.listdir(tmp_path) == []


def test_a_full_disk_is_reported_for_the_destination(tmp_path, model, monkeypatch):
    path = str(tmp_path / "m.tflite")

    def full(*args, **kwargs):
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(export_lib, "run_tflite", full)
    with pytest.raises(OSError) as info:
        export_tflite(model, path)
    assert_message(
        info,
        "Cannot write `path`",
        f"no space left on the device of {str(tmp_path)!r}",
        "Nothing was written",
        f"Received: path={path!r}",
    )
    assert os.listdir(tmp_path) == []


def test_sparse_encoding_shrinks_a_pruned_float_file(tmp_path, x):
    sparse = make_mlp(256, "wide", seed=4)
    weights = sparse.get_weights()
    for index in (0, 2):  # 80% zeros in both kernels, chosen with NumPy
        kernel = weights[index]
        kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.8)] = 0.0
    sparse.set_weights(weights)
    dense = export_tflite(sparse, tmp_path / "dense.tflite", sample_inputs=x)
    encoded = export_tflite(
        sparse, tmp_path / "sparse.tflite", sample_inputs=x, sparse_encoding=True
    )
    assert encoded.file_size_bytes < 0.6 * dense.file_size_bytes
    np.testing.assert_allclose(
        _direct_run(tmp_path / "sparse.tflite", x)[0],
        _direct_run(tmp_path / "dense.tflite", x)[0],
        rtol=1e-5,
        atol=1e-5,
    )
    with pytest.raises(ValueError) as info:
        export_tflite(
            sparse,
            tmp_path / "q.tflite",
            quantization="int8",
            representative_data=x,
            sparse_encoding=True,
        )
    assert_message(
        info,
        "`sparse_encoding=True` works with float32 files only",
        "Use quantization=None",
        "Received: quantization='int8'",
    )
    with pytest.raises(ValueError) as info:
        export_tflite(sparse, tmp_path / "q.tflite", sparse_encoding="yes")
    assert_message(info, "`sparse_encoding`", "True or False", "Received: sparse_encoding='yes'")


def test_latency_with_a_chosen_number_of_threads(tmp_path, model, x):
    export_tflite(model, tmp_path / "m.tflite", sample_inputs=x)
    for threads in (1, 4):
        timing = keras_distill.tflite_latency(tmp_path / "m.tflite", x, num_threads=threads)
        assert timing["num_threads"] == threads
        assert 0 < timing["min_ms"] <= timing["median_ms"]
    with pytest.raises(ValueError) as info:
        keras_distill.tflite_latency(tmp_path / "m.tflite", x, num_threads=0)
    assert_message(info, "`num_threads`", "an integer >= 1", "Received: num_threads=0")
