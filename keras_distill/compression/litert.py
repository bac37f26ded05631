"""Run `.tflite` files with the LiteRT interpreter: outputs and latency.

`ai_edge_litert` is imported only when a file is run (`tf.lite.Interpreter`
is deprecated). Integer input and output tensors are quantized and
dequantized here, so callers always pass and receive float32 arrays.
"""

import os
import statistics
import time

import numpy as np

from keras_distill._checks import check_int

_INSTALL_HINT = (
    "Running .tflite files needs the LiteRT interpreter. Install it with "
    "`pip install 'keras-distill[litert]'` or `pip install ai-edge-litert`."
)


def load_interpreter(model, num_threads=None):
    """A LiteRT `Interpreter` for a `.tflite` path or the file's bytes.

    Args:
        model: Path of a `.tflite` file, or its content as `bytes`.
        num_threads: Interpreter threads. Defaults to `None` (LiteRT's choice).

    Returns:
        An `ai_edge_litert.interpreter.Interpreter`.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    if isinstance(model, (bytes, bytearray)):
        return Interpreter(model_content=bytes(model), num_threads=num_threads)
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise ValueError(f"No .tflite file at this path. Received: model={path!r}")
    try:
        return Interpreter(model_path=path, num_threads=num_threads)
    except (ValueError, RuntimeError) as error:
        raise ValueError(
            f"The .tflite file is corrupted or truncated ({str(error).strip()}; "
            f"{os.path.getsize(path)} bytes). Export it again. Received: model={path!r}"
        ) from None


def set_inputs(interpreter, x, batch_size, signature_key=None):
    """Sets every input of `interpreter` to the first `batch_size` rows of `x` (repeated).

    Args:
        interpreter: A LiteRT interpreter.
        x: An array (a file with one input) or a dict of arrays by input name.
        batch_size: Rows per input.
        signature_key: The signature whose inputs a dict `x` names.
            Defaults to `None` (the file's only signature).
    """
    if isinstance(x, dict) or len(interpreter.get_input_details()) > 1:
        runner, arrays, details = _signature_inputs(interpreter, x, signature_key)
        del runner  # A live runner holds the interpreter, which then refuses to allocate.
        feeds = [(details[name], arrays[name]) for name in arrays]
    else:
        feeds = [(interpreter.get_input_details()[0], np.asarray(x, dtype=np.float32))]
    feeds = [
        (detail, array[np.resize(np.arange(len(array)), batch_size)]) for detail, array in feeds
    ]
    for detail, batch in feeds:
        if tuple(detail["shape"]) != batch.shape:
            interpreter.resize_tensor_input(detail["index"], list(batch.shape))
    interpreter.allocate_tensors()
    for detail, batch in feeds:
        interpreter.set_tensor(detail["index"], _quantize_input(batch, detail))


def _quantize_input(values, detail):
    if detail["dtype"] in (np.int8, np.uint8, np.int16):
        scale, zero_point = detail["quantization"]
        info = np.iinfo(detail["dtype"])
        values = np.round(values / scale + zero_point)
        return np.clip(values, info.min, info.max).astype(detail["dtype"])
    return values.astype(detail["dtype"])


def _dequantize_output(values, detail):
    if detail["dtype"] in (np.int8, np.uint8, np.int16):
        scale, zero_point = detail["quantization"]
        return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return values.astype(np.float32)


def run_tflite(model, x, batch_size=None, interpreter=None, signature_key=None):
    """Runs a `.tflite` model on `x`.

    int8/uint8 inputs are quantized with the file's scale and zero point,
    and such outputs dequantized, so float inputs and all outputs are float32.

    A file with one input and one output runs on an array and returns an
    array. With a dict `x` (and always for a file with several inputs or
    outputs) the file runs by its signature, as Android's
    `Interpreter.runSignature` does: `x` maps each input name to its array
    and the result maps each output name to its array.

    Args:
        model: Path of a `.tflite` file, or its bytes.
        x: Array of inputs, batch first, or a dict of them by input name.
        batch_size: Rows per `invoke()`. Defaults to `None` (all rows at once).
        interpreter: An interpreter already loaded for `model`, to reuse.
            Defaults to `None` (a new one).
        signature_key: The signature to run. Defaults to `None` (the file's
            only signature).

    Returns:
        A float32 NumPy array of outputs, one row per row of `x`, or a dict
        of them by output name.

    Example:
        ```python
        logits = run_tflite("student.tflite", x_test)
        outputs = run_tflite("text.tflite", {"token_ids": ids, "padding_mask": mask})
        ```
    """
    interpreter = interpreter or load_interpreter(model)
    several = len(interpreter.get_input_details()) > 1 or len(interpreter.get_output_details()) > 1
    if isinstance(x, dict) or several:
        return _run_signature(interpreter, x, batch_size, signature_key)
    x = np.asarray(x, dtype=np.float32)
    batch_size = len(x) if batch_size is None else int(batch_size)
    outputs = []
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        set_inputs(interpreter, batch, len(batch))
        interpreter.invoke()
        out_detail = interpreter.get_output_details()[0]
        outputs.append(_dequantize_output(interpreter.get_tensor(out_detail["index"]), out_detail))
    return np.concatenate(outputs, axis=0)


def _signature_inputs(interpreter, x, signature_key):
    """`(runner, {name: array}, {name: input detail})` of a run by signature, `x` checked."""
    signatures = interpreter.get_signature_list()
    if signature_key is None and len(signatures) == 1:
        signature_key = next(iter(signatures))
    if signature_key not in signatures:
        raise ValueError(
            f"No such signature: {signature_key!r}. Existing signatures are: "
            f"{sorted(signatures)}. Received: signature_key={signature_key!r}"
        )
    runner = interpreter.get_signature_runner(signature_key)
    in_details = runner.get_input_details()
    names = sorted(in_details)
    if not isinstance(x, dict) or sorted(x) != names:
        received = sorted(x) if isinstance(x, dict) else type(x).__name__
        raise ValueError(
            f"This file runs by its signature {signature_key!r}: `x` must be a dict of arrays "
            f"keyed by its input names {names}. Received: x={received}"
        )
    return runner, {name: np.asarray(x[name]) for name in names}, in_details


def _run_signature(interpreter, x, batch_size, signature_key):
    """Runs `{input name: array}` through a signature; `{output name: array}` back."""
    runner, x, in_details = _signature_inputs(interpreter, x, signature_key)
    count = len(next(iter(x.values())))
    batch_size = count if batch_size is None else int(batch_size)
    chunks = []
    for start in range(0, count, batch_size):
        batch = {
            name: _quantize_input(array[start : start + batch_size], in_details[name])
            for name, array in x.items()
        }
        outputs = runner(**batch)
        out_details = runner.get_output_details()
        chunks.append(
            {name: _dequantize_output(value, out_details[name]) for name, value in outputs.items()}
        )
    return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}


def tflite_latency(
    model, x, batch_size=1, repeats=9, warmup=2, num_threads=None, signature_key=None
):
    """Times `invoke()` of a `.tflite` model on one batch of `x`, in milliseconds.

    Timings on shared CPUs jump at random, so both the minimum (steadiest)
    and the median are returned; compare files with the minimum. Only
    `invoke()` is timed: every input is set before.

    Args:
        model: Path of a `.tflite` file, or its bytes.
        x: Inputs; the first `batch_size` rows are used (repeated when
            fewer). A file with several inputs takes a dict of arrays by
            input name, as `run_tflite` does.
        batch_size: Rows per call. Defaults to `1`.
        repeats: Timed calls. Defaults to `9`.
        warmup: Untimed calls first. Defaults to `2`.
        num_threads: Interpreter threads. Defaults to `None` (LiteRT's
            choice).
        signature_key: The signature whose inputs a dict `x` names.
            Defaults to `None` (the file's only signature).

    Returns:
        `{"batch_size", "repeats", "num_threads", "min_ms", "median_ms"}`.

    Example:
        ```python
        tflite_latency("student.tflite", x_test)["min_ms"]
        ```
    """
    check_int("batch_size", batch_size)
    check_int("repeats", repeats)
    if num_threads is not None:
        check_int("num_threads", num_threads)
    interpreter = load_interpreter(model, num_threads=num_threads)
    set_inputs(interpreter, x, batch_size, signature_key)
    for _ in range(max(int(warmup), 1)):
        interpreter.invoke()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1000.0)
    return {
        "batch_size": batch_size,
        "repeats": repeats,
        "num_threads": num_threads,
        "min_ms": min(times),
        "median_ms": statistics.median(times),
    }


def tflite_ops(model):
    """The sorted names of the operators in a `.tflite` file (e.g. `"FULLY_CONNECTED"`).

    The file is read without LiteRT's default delegates, so every operator
    shows under its own name (not `"DELEGATE"`). A TensorFlow op that
    LiteRT's builtins lack appears as `"FlexXxx"`, a custom op by its name.

    Args:
        model: Path of a `.tflite` file, or its bytes.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_litert.interpreter import OpResolverType
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    plain = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if isinstance(model, (bytes, bytearray)):
        interpreter = Interpreter(model_content=bytes(model), experimental_op_resolver_type=plain)
    else:
        load_interpreter(model)  # The checks of the path and the file.
        interpreter = Interpreter(model_path=os.fspath(model), experimental_op_resolver_type=plain)
    # `_get_ops_details` is the LiteRT interpreter's only listing of operators.
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})
