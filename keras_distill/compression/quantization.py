"""Quantization: distillation-aware QAT (tfmot on tf_keras, this package's own on Keras 3)
and Keras 3's `Model.quantize`."""

import re

from keras_distill._checks import check_bool
from keras_distill._checks import check_choice
from keras_distill._checks import check_model
from keras_distill._clone import clone_with_weights
from keras_distill._keras import GENERATION
from keras_distill._keras import IS_LEGACY
from keras_distill._keras import keras
from keras_distill._options import TrainingOptions
from keras_distill.compression import _training
from keras_distill.compression._tfmot import import_tfmot

KERAS_QUANTIZATION_MODES = ("int8", "int4", "float8")
# tfmot's quantize_apply: "Layer conv1d:<class '...Conv1D'> is not supported. ..."
_REJECTED = re.compile(r"Layer (.+?):<class '(?:[\w.]+\.)?(\w+)'> is not supported")
# Its prune-preserving registry:
# "`get_quantize_config()` called on an unsupported layer <class ...>"
_REJECTED_CLASS = re.compile(r"called on an unsupported layer <class '(?:[\w.]+\.)?(\w+)'>")


def unquantizable_layers(model):
    """Layers the 8-bit QAT scheme cannot quantize, as `(name, class name)` pairs.

    On tf_keras, checked the way tfmot checks them: the model is annotated
    (`quantize_annotate_layer`) and quantized (`quantize_apply`), so layers
    its transforms fold into their neighbours (BatchNormalization after a
    convolution, ReLU after BatchNormalization) count as supported. Each
    layer `quantize_apply` rejects is listed and left out of the next try.
    On Keras 3: layers with weights other than Dense, EinsumDense,
    Conv1D/2D, DepthwiseConv2D, SeparableConv2D and BatchNormalization
    (nested models searched).

    Args:
        model: A `keras.Model` of the active generation.

    Returns:
        A list of `(layer name, layer class name)`, in the order tfmot
        rejects them; input layers are left out.

    Example:
        ```python
        unquantizable_layers(cnn)  # [('conv1d', 'Conv1D')] on tf_keras
        ```
    """
    if not IS_LEGACY:
        from keras_distill.compression.keras3.qat import unquantizable_layers_keras3

        return unquantizable_layers_keras3(model)
    tfmot = import_tfmot("unquantizable_layers")
    scheme = tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()
    return _quantize(tfmot, model, scheme)[1]


def _listed(layers):
    return ", ".join(f"{name!r} ({cls})" for name, cls in layers)


def _quantize(tfmot, model, scheme):
    """`(quantized model or None, rejected layers, layers the scheme cannot keep in float)`.

    `quantize_apply` runs with the layers it rejected left in float32, until
    it succeeds, or until it rejects again a layer already left in float (the
    prune-preserving scheme does so when the next layer is quantized).
    """
    quantize = tfmot.quantization.keras
    rejected = []
    while True:
        skip = {name for name, _ in rejected}
        annotated = keras.models.clone_model(
            model,
            clone_function=lambda layer: (
                layer
                if layer.name in skip or isinstance(layer, keras.layers.InputLayer)
                else quantize.quantize_annotate_layer(layer)
            ),
        )
        annotated.set_weights(model.get_weights())
        try:
            return quantize.quantize_apply(annotated, scheme), rejected, []
        except (RuntimeError, ValueError) as error:
            found = _rejected_layers(str(error), model)
            if not found:
                raise
            if all(name in skip for name, _ in found):
                return None, rejected, found
            rejected.extend(pair for pair in found if pair[0] not in skip)


def _rejected_layers(message, model):
    """The `(name, class name)` pairs a tfmot error rejects, or `[]` for other errors.

    `quantize_apply` names the layer; the prune-preserving registry names only
    the class, so every layer of that class is rejected.
    """
    match = _REJECTED.match(message)
    if match is not None:
        return [(match.group(1), match.group(2))]
    match = _REJECTED_CLASS.search(message)
    if match is None:
        return []
    return [
        (layer.name, match.group(1))
        for layer in model.layers
        if type(layer).__name__ == match.group(1)
    ]


def quantization_aware_training(
    student,
    x,
    y=None,
    teacher=None,
    epochs=1,
    batch_size=32,
    optimizer=None,
    alpha=0.5,
    temperature=4.0,
    keep_float=False,
    preserve_sparsity=True,
    callbacks=None,
    validation_data=None,
    verbose=0,
):
    """Quantization-aware training of a copy of `student`, guided by `teacher`.

    The copy gets 8-bit fake quantization of weights and activations and is
    trained with the `Distiller`, or with plain cross-entropy when `teacher`
    is `None`. Convert the result with `export_tflite(model, path,
    quantization="int8")`: its ranges were learned, so no representative
    data is needed. `student` is not modified. The generation decides the
    implementation:
    - tf_keras: tfmot's default 8-bit scheme (or its sparsity-preserving
      one), `quantize_annotate_layer` + `quantize_apply`.
    - Keras 3 (`keras_distill.compression.keras3.qat`): BatchNormalization
      after a convolution or Dense is folded into it (`W' = W * g`,
      `b' = (b - mean) * g + beta`, `g = gamma / sqrt(var + eps)`), kernels
      are fake-quantized symmetrically (per output channel for
      convolutions, per tensor for Dense, depthwise and einsum kernels), and
      each computed activation over a moving-average range, with
      TensorFlow's `FakeQuantWithMinMaxVars` ops; `preserve_sparsity` puts
      the zeros' masks on the kernels, applied after every optimizer step.

    Layers the scheme cannot quantize (`unquantizable_layers`; on tf_keras
    e.g. `Conv1D`) are listed in a `ValueError`; with `keep_float=True` they
    stay float32 and the other layers are quantized. On tf_keras, support is
    decided by tfmot's `quantize_apply` itself, after its transforms fold
    Conv + BatchNormalization + ReLU (see `unquantizable_layers`).

    Args:
        student: Built `keras.Model` (logits out), e.g. a pruned student.
        x: Training inputs: an array, or a batched `tf.data.Dataset`.
        y: Integer labels for array `x`. Defaults to `None`.
        teacher: Trained `keras.Model`. Defaults to `None` (labels alone).
        epochs: Training epochs. Defaults to `1`.
        batch_size: Batch size for array inputs. Defaults to `32`.
        optimizer: Keras optimizer. Defaults to `Adam(1e-3)`.
        alpha: Distiller weight of the distillation term. Defaults to `0.5`.
        temperature: Distiller temperature. Defaults to `4.0`.
        keep_float: Keep unquantizable layers in float32 instead of raising.
            Defaults to `False`.
        preserve_sparsity: Keep the kernels' zeros zero (tfmot's
            prune-preserving scheme on tf_keras, masks on Keras 3). Defaults
            to `True`.
        callbacks: More Keras callbacks. Defaults to none.
        validation_data: As for `fit()`. Defaults to `None`.
        verbose: As for `fit()`. Defaults to `0`.

    Returns:
        A new quantization-aware `keras.Model`, trained.

    Example:
        ```python
        qat = quantization_aware_training(sparse, x_train, y_train, teacher=teacher)
        export_tflite(qat, "student_int8.tflite", quantization="int8")
        ```

    References:
        Jacob et al., "Quantization and Training of Neural Networks for
        Efficient Integer-Arithmetic-Only Inference", 2018.
        https://arxiv.org/abs/1712.05877
    """
    check_model("student", student)
    options = TrainingOptions(
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        alpha=alpha,
        temperature=temperature,
        callbacks=callbacks,
        validation_data=validation_data,
        verbose=verbose,
    )
    return qat_with_options(student, x, y, teacher, options, keep_float, preserve_sparsity)


def qat_with_options(student, x, y, teacher, options, keep_float=False, preserve_sparsity=True):
    """`quantization_aware_training` with its training options as one `TrainingOptions`."""
    keep_float, preserve_sparsity = check_qat_settings(keep_float, preserve_sparsity)
    if not IS_LEGACY:
        unsupported = unquantizable_layers(student)
        if unsupported and not keep_float:
            raise ValueError(
                "keras_distill's 8-bit quantization does not support these layers: "
                f"{_listed(unsupported)}. Pass `keep_float=True` to keep them in float32 and "
                "quantize the other layers. Received: keep_float=False"
            )
        from keras_distill.compression.keras3.qat import qat_keras3

        return qat_keras3(student, x, y, teacher, options, preserve_sparsity)
    tfmot = import_tfmot("quantization_aware_training")
    quantize = tfmot.quantization.keras
    if preserve_sparsity:
        scheme = quantize.collab_opts.Default8BitPrunePreserveQuantizeScheme()
    else:
        scheme = quantize.default_8bit.Default8BitQuantizeScheme()
    model, unsupported, blocked = _quantize(tfmot, student, scheme)
    if unsupported and not keep_float:
        raise ValueError(
            f"tfmot's 8-bit quantization does not support these layers: {_listed(unsupported)}. "
            "Pass `keep_float=True` to keep them in float32 and quantize the other layers. "
            "Received: keep_float=False"
        )
    if blocked:
        raise ValueError(
            "tfmot's sparsity-preserving 8-bit scheme cannot keep these layers in float32 "
            f"before a quantized layer: {_listed(blocked)}. Pass `preserve_sparsity=False` "
            "(tfmot's default 8-bit scheme keeps them in float32) or remove them from the "
            "model. Received: preserve_sparsity=True"
        )
    _training.fit(model, x, y, teacher, options)
    return model


def check_qat_settings(keep_float=False, preserve_sparsity=True):
    """Checks the QAT's own settings (not the training options); returns them as bools.

    `compress` calls it before any stage trains, so a bad value is found at once.
    """
    return check_bool("keep_float", keep_float), check_bool("preserve_sparsity", preserve_sparsity)


def keras_quantize(model, mode="int8"):
    """A copy of `model` quantized with Keras 3's own `Model.quantize(mode)`.

    Post-training weight quantization inside Keras (int8 kernels with
    per-channel scales; activations quantized on the fly), for smaller and
    faster Keras inference. The TFLite converter cannot convert these
    kernels: for a `.tflite` file, export the float model with
    `export_tflite(model, path, quantization="int8", representative_data=x)`.

    Needs Keras 3 (the default generation).

    Args:
        model: A built Keras 3 `keras.Model`.
        mode: One of `"int8"`, `"int4"`, `"float8"`. Defaults to `"int8"`.

    Returns:
        A new, quantized `keras.Model`; `model` is unchanged.

    Example:
        ```python
        small = keras_quantize(distiller.student)
        ```
    """
    if IS_LEGACY:
        raise ValueError(
            "`keras_quantize` uses Keras 3's `Model.quantize()`, which tf_keras lacks. Unset "
            "TF_USE_LEGACY_KERAS to run on Keras 3, or on tf_keras use "
            "`quantization_aware_training()` or `export_tflite(model, path, "
            f"quantization='int8', representative_data=x)`. Received: GENERATION={GENERATION!r}"
        )
    check_choice("mode", mode, KERAS_QUANTIZATION_MODES)
    copy = clone_with_weights(model, "model")
    copy.quantize(mode)
    return copy
