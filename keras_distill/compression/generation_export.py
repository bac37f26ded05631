"""`export_generation_tflite`: a causal LM as a `.tflite` with `prefill` and `decode` signatures."""

import os
import tempfile

import numpy as np
import tensorflow as tf

from keras_distill._checks import check_causal_lm
from keras_distill._checks import check_choice
from keras_distill._checks import check_int
from keras_distill._checks import check_path
from keras_distill._files import atomic_path
from keras_distill._generation import cache_shape
from keras_distill.compression.export import _configure_and_convert
from keras_distill.compression.litert import load_interpreter
from keras_distill.compression.litert import tflite_ops

PREFILL_KEY = "prefill"
DECODE_KEY = "decode"
GENERATION_QUANTIZATION_MODES = (None, "dynamic", "float16")


def export_generation_tflite(
    model,
    path,
    max_sequence_length=None,
    prefill_length=None,
    quantization=None,
    num_check_steps=4,
):
    """Writes a causal LM as a `.tflite` that generates: `prefill` once, then `decode` per token.

    The file has two signatures, both built on keras_hub's
    `call_with_cache(token_ids, cache, cache_update_index)`, batch 1, with
    the key/value cache as an input and an output tensor of fixed shape
    `(1, num_layers, 2, max_sequence_length, num_key_value_heads, head_dim)`:

    - `prefill(token_ids: int32 (1, prefill_length), length: int32 (1,))
      -> {logits: float32 (1, vocabulary), cache}`: the prompt padded on the
      right to `prefill_length`, its length `n`; `logits` are those of
      position `n - 1` (they choose token `n`), `cache` holds the keys and
      values of positions `0..prefill_length-1`.
    - `decode(token_id: int32 (1, 1), position: int32 (1,), cache)
      -> {logits, cache}`: the token at `position` (`n`, then `n + 1`, ...)
      writes its keys and values into the cache at `position` and returns
      the logits that choose the next token.

    The causal mask lets position `i` attend to cache positions `<= i`
    only, so the padding that prefill writes past the prompt is never read
    and each decode step overwrites it. A sequence (prompt and generated
    tokens) holds at most `max_sequence_length` tokens. `TFLiteGenerator`
    runs the loop in Python; on Android the same two calls are
    `interpreter.runSignature(inputs, outputs, "prefill")` and
    `"decode"` (see docs/android.md).

    The file is written atomically (a temporary file beside `path`,
    checked, then moved onto it): a failure leaves no partial file.

    Before the move, the file greedily decodes `num_check_steps` tokens
    after a fixed prompt, and the logits of every step are compared with
    those of `call_with_cache` in TensorFlow fed the same tokens.

    Quantization modes (TFLite post-training quantization; the cache and
    the logits stay float32):
    - `None`: float32.
    - `"dynamic"`: int8 weights, float activations (dynamic range).
    - `"float16"`: float16 weights.

    Full-integer `"int8"` (int8 activations too) is not offered: its
    calibration fails on the 6-D slices of the cache
    (`StridedSlice op only supports 1D-5D input arrays`, TensorFlow 2.21).

    Args:
        model: A keras_hub causal LM (`GPT2CausalLM`, `LlamaCausalLM`,
            `GemmaCausalLM`, ...: any model with `call_with_cache` and a
            `backbone`), or a `Distiller` whose student is one.
        path: Destination, ending in `.tflite`. Folders are created.
        max_sequence_length: Tokens a sequence holds (the cache length).
            Defaults to `None`: the backbone's `max_sequence_length` (its
            position embedding's length); models without one (rotary
            position embeddings) must be given a value.
        prefill_length: Tokens `prefill` takes (the longest prompt).
            Defaults to `None` (`max_sequence_length`).
        quantization: One of `None`, `"dynamic"`, `"float16"`. Defaults
            to `None`.
        num_check_steps: Decode steps of the check. Defaults to `4`.

    Returns:
        A dict: `path`, `quantization`, `file_size_bytes`,
        `max_sequence_length`, `prefill_length`, `cache_shape`, `ops` (the
        file's operator names, sorted), `max_abs_logit_diff` (one float per
        checked step, prefill first: `max |tflite - tensorflow|`).

    Raises:
        TypeError: when `model` is not a causal LM with `call_with_cache`.
        ValueError: when a length exceeds what the model was built for, or
            for an unknown quantization mode.

    Example:
        ```python
        info = export_generation_tflite(student, "student_lm.tflite",
                                        max_sequence_length=128,
                                        quantization="dynamic")
        generator = TFLiteGenerator("student_lm.tflite")
        tokens = generator.generate([2, 17, 40], max_new_tokens=32)
        ```

    References:
        Pope et al. 2023, "Efficiently Scaling Transformer Inference"
        (the key/value cache of autoregressive decoding).
        LiteRT signatures: https://ai.google.dev/edge/litert/inference#run-signature
    """
    from keras_distill.distiller import Distiller

    if isinstance(model, Distiller):
        model = model.student
    check_causal_lm("model", model)
    path = check_path("path", path, ".tflite")
    _check_quantization(quantization)
    check_int("num_check_steps", num_check_steps, minimum=0)
    max_sequence_length = _max_sequence_length(model, max_sequence_length)
    if prefill_length is None:
        prefill_length = max_sequence_length
    check_int("prefill_length", prefill_length)
    if prefill_length > max_sequence_length:
        raise ValueError(
            "`prefill_length` must be at most `max_sequence_length` "
            f"({max_sequence_length}): the prompt lives in the cache. "
            f"Received: prefill_length={prefill_length}"
        )
    vocabulary_size = int(model.backbone.vocabulary_size)
    cache_shape = _cache_shape(model, max_sequence_length)
    functions = _GenerationFunctions(model, cache_shape, prefill_length)
    content = _convert(model, functions, quantization)
    with atomic_path(path, suffix=".tflite") as temporary:
        with open(temporary, "wb") as stream:
            stream.write(content)
        interpreter = load_interpreter(temporary)
        diffs = _check_steps(interpreter, functions, vocabulary_size, num_check_steps)
        info = {
            "path": path,
            "quantization": quantization,
            "file_size_bytes": os.path.getsize(temporary),
            "max_sequence_length": max_sequence_length,
            "prefill_length": prefill_length,
            "cache_shape": cache_shape,
            "ops": tflite_ops(content),
            "max_abs_logit_diff": diffs,
        }
    return info


def _check_quantization(quantization):
    if quantization == "int8":
        raise ValueError(
            "`quantization='int8'` (int8 activations, calibrated) is not offered for generation "
            "files: TFLite's calibration fails on the 6-D key/value cache slices. Use "
            "`quantization='dynamic'` for int8 weights with float activations. "
            "Received: quantization='int8'"
        )
    check_choice("quantization", quantization, GENERATION_QUANTIZATION_MODES)


def _max_sequence_length(model, max_sequence_length):
    built_for = getattr(model.backbone, "max_sequence_length", None)
    if max_sequence_length is None:
        if built_for is None:
            raise ValueError(
                "`max_sequence_length` is needed: the model's backbone has no "
                "`max_sequence_length` (rotary position embeddings), so pass the longest "
                "sequence the file must hold, e.g. max_sequence_length=256. "
                "Received: max_sequence_length=None"
            )
        return int(built_for)
    check_int("max_sequence_length", max_sequence_length)
    if built_for is not None and max_sequence_length > built_for:
        raise ValueError(
            f"`max_sequence_length` must be at most {built_for}, the length the model's "
            "position embedding was built for; pass a smaller value or None. "
            f"Received: max_sequence_length={max_sequence_length}"
        )
    return int(max_sequence_length)


def _cache_shape(model, max_sequence_length):
    """`(1, layers, 2, length, key/value heads, head dim)`, read from the backbone."""
    return cache_shape(model, max_sequence_length, batch_size=1)


class _GenerationFunctions:
    """The two signature functions of a causal LM, and their specs."""

    def __init__(self, model, cache_shape, prefill_length):
        self.model = model
        self.cache_shape = cache_shape
        self.prefill_length = prefill_length
        self.cache_dtype = tf.as_dtype(model.compute_dtype)
        cache_spec = tf.TensorSpec(cache_shape, self.cache_dtype, name="cache")
        self.prefill_signature = [
            tf.TensorSpec((1, prefill_length), tf.int32, name="token_ids"),
            tf.TensorSpec((1,), tf.int32, name="length"),
        ]
        self.decode_signature = [
            tf.TensorSpec((1, 1), tf.int32, name="token_id"),
            tf.TensorSpec((1,), tf.int32, name="position"),
            cache_spec,
        ]

    def prefill(self, token_ids, length):
        cache = tf.zeros(self.cache_shape, self.cache_dtype)
        logits, _, cache = self.model.call_with_cache(token_ids, cache, 0)
        last = tf.gather(logits, length - 1, axis=1, batch_dims=1)
        return {"logits": tf.cast(last, tf.float32), "cache": cache}

    def decode(self, token_id, position, cache):
        logits, _, cache = self.model.call_with_cache(token_id, cache, position[0])
        return {"logits": tf.cast(logits[:, 0], tf.float32), "cache": cache}


def _convert(model, functions, quantization):
    """The `.tflite` bytes with the `prefill` and `decode` signatures."""
    # Only the weights are tracked (Keras 3 variables hold their `tf.Variable` in `.value`):
    # tracking the model itself would make the SavedModel trace every function of its layers.
    module = tf.Module()
    module.weights = [getattr(variable, "value", variable) for variable in model.variables]
    signatures = {
        PREFILL_KEY: tf.function(
            functions.prefill, input_signature=functions.prefill_signature
        ).get_concrete_function(),
        DECODE_KEY: tf.function(
            functions.decode, input_signature=functions.decode_signature
        ).get_concrete_function(),
    }
    with tempfile.TemporaryDirectory() as saved_model_dir:
        tf.saved_model.save(module, saved_model_dir, signatures=signatures)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved_model_dir, signature_keys=[PREFILL_KEY, DECODE_KEY]
        )
        return _configure_and_convert(converter, model, quantization, None, False, False)


def _check_steps(interpreter, functions, vocabulary_size, num_steps):
    """`max |tflite - tensorflow|` of the logits at prefill and each greedy decode step."""
    length = min(4, functions.prefill_length, functions.cache_shape[3] - num_steps)
    length = max(length, 1)
    prompt = (np.arange(length, dtype=np.int32) * 7 + 1) % vocabulary_size
    prefill_runner = interpreter.get_signature_runner(PREFILL_KEY)
    decode_runner = interpreter.get_signature_runner(DECODE_KEY)
    token_ids = np.zeros((1, functions.prefill_length), np.int32)
    token_ids[0, :length] = prompt
    inputs = {"token_ids": token_ids, "length": np.array([length], np.int32)}
    lite = prefill_runner(**inputs)
    ref = functions.prefill(tf.constant(token_ids), tf.constant(inputs["length"]))
    diffs = [float(np.max(np.abs(lite["logits"] - ref["logits"].numpy())))]
    cache, ref_cache = lite["cache"], ref["cache"]
    last = functions.cache_shape[3] - 1
    for position in range(length, min(length + num_steps, last + 1)):
        token = np.array([[int(np.argmax(lite["logits"][0]))]], np.int32)
        where = np.array([position], np.int32)
        lite = decode_runner(token_id=token, position=where, cache=cache)
        ref = functions.decode(tf.constant(token), tf.constant(where), ref_cache)
        diffs.append(float(np.max(np.abs(lite["logits"] - ref["logits"].numpy()))))
        cache, ref_cache = lite["cache"], ref["cache"]
    return diffs
