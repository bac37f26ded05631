"""`export_tflite`: a verified `.tflite` of the student, written atomically."""

import os
import re
import tempfile

import numpy as np
import tensorflow as tf

from keras_distill import _checks
from keras_distill._checks import check_choice
from keras_distill._checks import check_int
from keras_distill._checks import check_keras_model
from keras_distill._checks import check_path
from keras_distill._files import atomic_path
from keras_distill._keras import GENERATION
from keras_distill._keras import IS_LEGACY
from keras_distill._keras import all_layers
from keras_distill._keras import keras
from keras_distill.compression.export_report import ExportReport
from keras_distill.compression.litert import load_interpreter
from keras_distill.compression.litert import run_tflite
from keras_distill.compression.signature import SIGNATURE_KEY
from keras_distill.compression.signature import as_model_inputs
from keras_distill.compression.signature import functional_view
from keras_distill.compression.signature import input_signature
from keras_distill.compression.signature import named_arrays
from keras_distill.compression.signature import serving_function

QUANTIZATION_MODES = (None, "dynamic", "float16", "int8")
_MISSING_OP = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")
# tfmot's QAT layers (tf_keras) and this package's activation quantizer (Keras 3).
_QAT_LAYER_CLASSES = ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer", "FakeQuant")
_PRUNING_LAYER_CLASSES = ("PruneLowMagnitude",)


class ParityError(ValueError):
    """The exported file disagrees with the Keras model beyond a threshold.

    The file is not written. `error.report` holds the `ExportReport`.
    """

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


def export_tflite(
    model,
    path,
    quantization=None,
    representative_data=None,
    int8_io=False,
    sample_inputs=None,
    num_samples=64,
    num_calibration_samples=200,
    max_abs_diff_threshold=None,
    min_top1_agreement=None,
    seed=0,
    sparse_encoding=False,
):
    """Converts a Keras model to `.tflite`, runs the file, and reports the agreement.

    Only the student leaves: a `Distiller` is exported as its `student`
    (no teacher, adapters or capture machinery), and a model still wrapped
    for pruning is stripped first (`tfmot.sparsity.keras.strip_pruning`).

    The file is written atomically: the bytes go to a temporary file in the
    same folder, which LiteRT runs for the parity check, and which then
    replaces `path` with `os.replace`. Any failure (conversion, writing, a
    broken threshold) leaves no partial file and an existing `path` intact.

    The parity check runs the Keras model and the file on `sample_inputs`
    and measures `max |keras - tflite|` over all outputs and the top-1
    agreement (fraction of rows whose argmax is the same).

    Quantization modes (TFLite post-training quantization):
    - `None`: float32.
    - `"dynamic"`: int8 weights, float activations (dynamic range).
    - `"float16"`: float16 weights.
    - `"int8"`: full-integer weights and activations, calibrated on
      `representative_data` (not needed for a quantization-aware-trained
      model of either generation, whose ranges were learned: on Keras 3 the
      model is exported as a SavedModel and converted from it, the road on
      which TensorFlow's fake-quant ops become int8 tensors). Input and
      output stay float32 unless `int8_io=True`.

    The file has one signature, `"serving_default"`, whose inputs and
    outputs keep the Keras names (dict keys, or the names of the inputs and
    output layers): Android calls it with
    `interpreter.runSignature(inputs, outputs, "serving_default")`, and
    `run_tflite` with a dict of arrays by input name.

    Args:
        model: `keras.Model` of the active Keras generation (one or several
            inputs and outputs, as a tensor, list or dict), or a
            `Distiller`. A subclassed model is exported through a
            functional view shaped like `sample_inputs`.
        path: Destination, ending in `.tflite`. Folders are created.
        quantization: One of `None`, `"dynamic"`, `"float16"`, `"int8"`.
            Defaults to `None`.
        representative_data: Typical inputs for `"int8"` calibration: an
            array (batch first), a list or dict of arrays for several inputs,
            or a `tf.data.Dataset` of `x` or `(x, y)` batches. Defaults to
            `None`.
        int8_io: With `"int8"`, make the file's input and output tensors
            int8 (for integer-only accelerators). Defaults to `False`.
        sample_inputs: Inputs for the parity check. Defaults to the first
            `num_samples` rows of `representative_data`, else standard
            normal noise of the model's input shape.
        num_samples: Rows compared when `sample_inputs` is not given.
            Defaults to `64`.
        num_calibration_samples: Rows of `representative_data` used for
            calibration. Defaults to `200`.
        max_abs_diff_threshold: Raise `ParityError` when the max absolute
            difference exceeds it. Defaults to `None` (no check).
        min_top1_agreement: Raise `ParityError` when the top-1 agreement is
            below it. Defaults to `None` (no check).
        seed: Seed of the noise inputs. Defaults to `0`.
        sparse_encoding: Store the kernels of a pruned float32 model in
            TFLite's sparse format (`Optimize.EXPERIMENTAL_SPARSITY`): an 80%
            sparse MLP's file shrinks to about 0.3x (see docs/compression.md);
            LiteRT's XNNPACK delegate densifies them again, so latency is
            unchanged. Only with `quantization=None`: XNNPACK cannot prepare
            sparse int8 kernels. Defaults to `False`.

    Returns:
        An `ExportReport` (`print` it, or `to_json()`).

    Example:
        ```python
        report = export_tflite(distiller.student, "student_int8.tflite",
                               quantization="int8", representative_data=x_train,
                               min_top1_agreement=0.98)
        print(report)
        ```

    References:
        TensorFlow Lite post-training quantization:
        https://ai.google.dev/edge/litert/models/post_training_quantization
    """
    model = _exportable_model(model)
    path = _check_path(path)
    model = functional_view(model, _example(sample_inputs, representative_data))
    _check_options(quantization, representative_data, int8_io, model, num_samples)
    _check_sparse_encoding(sparse_encoding, quantization)
    calibration = None
    if representative_data is not None:
        calibration = _rows(
            model, representative_data, num_calibration_samples, "representative_data"
        )
        _check_inputs_fit("representative_data", calibration, model)
    if sample_inputs is None:
        sample_inputs = (
            _take(calibration, num_samples) if calibration else _noise(model, num_samples, seed)
        )
    sample_inputs = _rows(model, sample_inputs, None, "sample_inputs")
    _check_inputs_fit("sample_inputs", sample_inputs, model)
    keras_outputs = _predict(model, sample_inputs)
    content = _convert(model, quantization, calibration, int8_io, sparse_encoding)
    with atomic_path(path, suffix=".tflite") as temporary:
        with open(temporary, "wb") as stream:
            stream.write(content)
        interpreter = load_interpreter(temporary)
        tflite_outputs = run_tflite(temporary, sample_inputs, interpreter=interpreter)
        runner = interpreter.get_signature_runner(SIGNATURE_KEY)
        report = ExportReport(
            path=path,
            quantization=quantization,
            file_size_bytes=os.path.getsize(temporary),
            input_dtype=_dtype_names(runner.get_input_details()),
            output_dtype=_dtype_names(runner.get_output_details()),
            keras_outputs=_single_or_all(keras_outputs),
            tflite_outputs=_single_or_all(tflite_outputs),
            max_abs_diff_threshold=max_abs_diff_threshold,
            min_top1_agreement=min_top1_agreement,
            generation=GENERATION,
        )
        if not report.passed:
            raise ParityError(
                "The .tflite file disagrees with the Keras model: "
                + "; ".join(report.failures)
                + f". The file was not written. Received: path={path!r}",
                report,
            )
    return report


def _exportable_model(model):
    from keras_distill.distiller import Distiller

    if isinstance(model, Distiller):
        model = model.student
    check_keras_model("model", model)
    classes = {type(layer).__name__ for layer in all_layers(model)}
    if classes & set(_PRUNING_LAYER_CLASSES):
        from keras_distill.compression._tfmot import import_tfmot

        model = import_tfmot("export_tflite").sparsity.keras.strip_pruning(model)
    if not IS_LEGACY:
        quantized = [
            layer.name for layer in all_layers(model) if getattr(layer, "quantization_mode", None)
        ]
        if quantized:
            raise ValueError(
                "`model` was quantized with Keras's `Model.quantize()`, whose int8 kernels the "
                "TFLite converter cannot convert. Export the float model with "
                "`quantization='int8'` (and `representative_data`) instead. "
                f"Received: model={model.name!r} with quantized layers {quantized}"
            )
    return model


def _check_path(path):
    return check_path("path", path, ".tflite")


def _check_options(quantization, representative_data, int8_io, model, num_samples):
    check_choice("quantization", quantization, QUANTIZATION_MODES)
    if quantization == "int8" and representative_data is None and not is_qat_model(model):
        raise ValueError(
            "`quantization='int8'` (full-integer) needs `representative_data` to calibrate "
            "the activation ranges: pass about 100-500 typical inputs (an array or a "
            "tf.data.Dataset). Received: representative_data=None"
        )
    if int8_io and quantization != "int8":
        raise ValueError(
            "`int8_io=True` makes the input and output tensors int8, which needs "
            f"`quantization='int8'`. Received: int8_io=True, quantization={quantization!r}"
        )
    check_int("num_samples", num_samples)
    input_signature(model)  # The model must know its inputs.


def is_qat_model(model):
    """`True` when `model` was prepared for quantization-aware training (either generation)."""
    return any(type(layer).__name__ in _QAT_LAYER_CLASSES for layer in all_layers(model))


def _noise(model, num_samples, seed):
    """Standard normal inputs for models whose inputs are all float with known shapes."""
    rng = np.random.default_rng(seed)
    noise = {}
    for spec in tf.nest.flatten(input_signature(model)):
        if not spec.dtype.is_floating or None in spec.shape[1:]:
            raise ValueError(
                "The model has an integer input or one with unknown dimensions besides the "
                "batch, so noise inputs cannot be made; pass `sample_inputs`. "
                f"Received: input {spec.name!r} of shape {tuple(spec.shape)} and dtype "
                f"{spec.dtype.name}"
            )
        noise[spec.name] = rng.standard_normal((num_samples, *spec.shape[1:]))
    return noise


def _example(sample_inputs, representative_data):
    """Inputs that show the shapes of a model's inputs: the first batch of the data."""
    data = representative_data if sample_inputs is None else sample_inputs
    if isinstance(data, tf.data.Dataset):
        for element in data.take(1):
            return _numpy(element[0] if isinstance(element, tuple) else element)
        return None
    return data


def _take(arrays, count):
    return {name: array[:count] for name, array in arrays.items()}


def _rows(model, data, limit, name):
    """`data` (arrays, or a tf.data.Dataset of x or (x, y) batches) as `{input name: array}`."""
    if isinstance(data, tf.data.Dataset):
        chunks, count = [], 0
        for element in data:
            x = element[0] if isinstance(element, tuple) else element
            chunks.append(named_arrays(model, _numpy(x), name))
            count += len(next(iter(chunks[-1].values())))
            if limit is not None and count >= limit:
                break
        if not chunks:
            raise ValueError(f"`{name}` must hold at least one example. Received: an empty dataset")
        arrays = {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}
    else:
        arrays = named_arrays(model, data, name)
    return arrays if limit is None else _take(arrays, limit)


def _numpy(x):
    return tf.nest.map_structure(np.asarray, x)


def _predict(model, arrays):
    """`{output name: float32 array}` of the Keras model on `{input name: array}`."""
    serve = serving_function(model)
    count = len(next(iter(arrays.values())))
    chunks = []
    for start in range(0, count, 256):
        batch = {name: tf.constant(array[start : start + 256]) for name, array in arrays.items()}
        chunks.append(serve(as_model_inputs(model, batch)))
    return {
        name: np.concatenate([np.asarray(chunk[name]) for chunk in chunks]).astype(np.float32)
        for name in chunks[0]
    }


def _single_or_all(outputs):
    """The one output's array, or every output by name."""
    return next(iter(outputs.values())) if len(outputs) == 1 else outputs


def _dtype_names(details):
    """`"float32"` for one tensor, `"name: dtype, ..."` for several."""
    names = {name: np.dtype(detail["dtype"]).name for name, detail in sorted(details.items())}
    if len(names) == 1:
        return next(iter(names.values()))
    return ", ".join(f"{name}: {dtype}" for name, dtype in names.items())


def _check_sparse_encoding(sparse_encoding, quantization):
    if not isinstance(sparse_encoding, bool):
        raise ValueError(
            "`sparse_encoding` must be True or False. "
            f"Received: sparse_encoding={sparse_encoding!r}"
        )
    if sparse_encoding and quantization is not None:
        raise ValueError(
            "`sparse_encoding=True` works with float32 files only: LiteRT's XNNPACK delegate "
            "cannot prepare sparse quantized kernels. Use quantization=None, or leave the "
            f"sparse encoding off. Received: quantization={quantization!r}"
        )


def _check_inputs_fit(argument, arrays, model):
    """Raises unless every input array is finite and shaped like the model's input."""
    specs = tf.nest.flatten(input_signature(model))
    several = len(arrays) > 1
    for (name, array), spec in zip(arrays.items(), specs):
        label = f"{argument}[{name!r}]" if several else argument
        _checks.check_inputs_fit(label, array, tuple(spec.shape[1:]))


def _convert(model, quantization, calibration, int8_io, sparse_encoding=False):
    """The `.tflite` bytes of `model`, with one signature that keeps the Keras names."""
    signature = [input_signature(model)]
    serve = serving_function(model)
    with tempfile.TemporaryDirectory() as saved_model_dir:
        if IS_LEGACY:
            function = tf.function(serve, input_signature=signature)
            tf.saved_model.save(
                model, saved_model_dir, signatures={SIGNATURE_KEY: function.get_concrete_function()}
            )
        else:
            archive = keras.export.ExportArchive()
            archive.track(model)
            archive.add_endpoint(SIGNATURE_KEY, serve, input_signature=signature)
            archive.write_out(saved_model_dir, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        return _configure_and_convert(
            converter, model, quantization, calibration, int8_io, sparse_encoding
        )


def _configure_and_convert(converter, model, quantization, calibration, int8_io, sparse_encoding):
    if quantization is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if sparse_encoding:
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        if calibration is not None:

            def representative_dataset():
                count = len(next(iter(calibration.values())))
                for row in range(count):
                    yield {name: array[row : row + 1] for name, array in calibration.items()}

            converter.representative_dataset = representative_dataset
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    try:
        return converter.convert()
    except Exception as error:  # The converter's ConverterError is not a public class.
        missing = sorted(set(_MISSING_OP.findall(str(error))))
        if type(error).__name__ != "ConverterError" or not missing:
            raise
        raise ValueError(
            f"`model` uses TensorFlow ops that TFLite's built-in ops lack: {missing}. A .tflite "
            "file with them would not run on the standard TFLite/LiteRT runtime of a phone. "
            "Replace those ops in the model, or convert it yourself with "
            "`converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, "
            "tf.lite.OpsSet.SELECT_TF_OPS]` and ship the Flex delegate in the app. "
            f"Received: model={model.name!r}"
        ) from None
