"""Recovery of a channel-pruned model by distillation from the model it was pruned from."""

from keras_distill._checks import check_distinct
from keras_distill._checks import check_int
from keras_distill._checks import check_model
from keras_distill._checks import check_number
from keras_distill._keras import keras
from keras_distill.compression.channels.graph import read_graph
from keras_distill.compression.channels.spaces import PRODUCERS
from keras_distill.matching.matches import FeatureMatch

FOLLOW_ON = ("Activation", "BatchNormalization", "ELU", "LeakyReLU", "PReLU", "ReLU")
"""Layers that end a pruned layer's block, when they are its only consumer."""


def channel_matches(student, teacher, layers=None, loss="mse", weight=1.0):
    """Feature matches between the same-named layers of a pruned model and its original.

    `prune_channels` keeps the layer names, so each layer of the pruned
    student has its counterpart in the teacher. By default one match is made
    per pruned Conv/Dense layer (fewer channels than in the teacher), at the
    end of its block: the last of the BatchNormalization and activation
    layers that follow it one after another. The student's features have
    fewer channels, so each match learns a projection (`adapter="auto"`,
    FitNets' hint regressor) to the teacher's: `L = weight * mean((A(f_s) - f_t)^2)`.

    Args:
        student: The pruned `keras.Model` (from `prune_channels`).
        teacher: The unpruned `keras.Model` it came from.
        layers: Names of the layers to match, in both models. Defaults to
            `None` (the ends of the pruned blocks, as above).
        loss: A `FeatureMatch` loss. Defaults to `"mse"`.
        weight: Weight of each match. Defaults to `1.0`.

    Returns:
        A list of `FeatureMatch`, for `Distiller(feature_matches=...)`.

    Example:
        ```python
        small = prune_channels(model, fraction=0.5)
        Distiller(small, model, feature_matches=channel_matches(small, model))
        ```
    """
    check_model("student", student)
    check_model("teacher", teacher)
    student_names = {layer.name for layer in student.layers}
    teacher_names = {layer.name for layer in teacher.layers}
    if layers is None:
        layers = _block_ends(student, teacher, teacher_names)
    elif isinstance(layers, str) or not all(isinstance(name, str) for name in layers):
        raise ValueError(f"`layers` must be a list of layer names. Received: layers={layers!r}")
    for name in layers:
        if name not in student_names or name not in teacher_names:
            where = "student" if name not in student_names else "teacher"
            raise ValueError(
                f"`layers` names a layer that the {where} does not have: {name!r}. Both models "
                f"must have it (prune_channels keeps the names). Received: layers={list(layers)!r}"
            )
    return [FeatureMatch(name, name, loss=loss, weight=weight) for name in layers]


def _block_ends(student, teacher, teacher_names):
    graph = read_graph(student)
    consumers = {}
    for call in graph.calls:
        for name in call.inputs:
            consumers.setdefault(name, []).append(call)
    ends = []
    for call in graph.calls:
        if call.class_name not in PRODUCERS or call.name not in teacher_names:
            continue
        channels = student.get_layer(call.name).output.shape[-1]
        if channels == teacher.get_layer(call.name).output.shape[-1]:
            continue
        end = call
        while True:
            after = consumers.get(end.name, [])
            if len(after) != 1 or after[0].class_name not in FOLLOW_ON:
                break
            if after[0].name not in teacher_names:
                break
            end = after[0]
        ends.append(end.name)
    return ends


def recover_channels(
    student,
    teacher,
    x,
    y=None,
    epochs=5,
    batch_size=32,
    optimizer=None,
    alpha=0.5,
    temperature=4.0,
    feature_weight=1.0,
    feature_layers=None,
    callbacks=None,
    validation_data=None,
    verbose=0,
):
    """Fine-tunes a channel-pruned `student` with its unpruned `teacher` (in place).

    The `Distiller` trains the student on
    `(1 - alpha) * H(y, s) + alpha * T^2 * KL(softmax(t/T) || softmax(s/T))`
    plus `feature_weight * mean((A(f_s) - f_t)^2)` for each pair of
    same-named layers chosen by `channel_matches` (FitNets-style hints with
    a learned projection `A`, which is not part of the student). The
    teacher is frozen while the student trains, and its `trainable` flag
    is restored afterwards.

    Args:
        student: The pruned `keras.Model` (from `prune_channels`); trained in place.
        teacher: The unpruned `keras.Model` it was pruned from (logits out).
        x: Training inputs: an array, or a batched `tf.data.Dataset` of
            `(x, y)` (then `y` is `None`).
        y: Integer labels for array `x`. Defaults to `None`.
        epochs: Training epochs. Defaults to `5`.
        batch_size: Batch size for array inputs. Defaults to `32`.
        optimizer: A Keras optimizer. Defaults to `Adam(1e-3)`.
        alpha: Weight of the distillation term. Defaults to `0.5`.
        temperature: Distillation temperature. Defaults to `4.0`.
        feature_weight: Weight of each feature match; `0` for logits
            distillation alone. Defaults to `1.0`.
        feature_layers: Layer names to match, as `channel_matches(layers=)`.
            Defaults to `None` (the ends of the pruned blocks).
        callbacks: More Keras callbacks. Defaults to none.
        validation_data: As for `fit()`. Defaults to `None`.
        verbose: As for `fit()`. Defaults to `0`.

    Returns:
        `student`, trained.

    Example:
        ```python
        small = prune_channels(model, fraction=0.5)
        recover_channels(small, model, x_train, y_train, epochs=10)
        ```

    References:
        Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015.
        https://arxiv.org/abs/1412.6550
        Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
        Network", 2015. https://arxiv.org/abs/1503.02531
    """
    from keras_distill.distiller import Distiller

    check_model("student", student)
    check_model("teacher", teacher)
    check_distinct(student, teacher)
    epochs = check_int("epochs", epochs)
    batch_size = check_int("batch_size", batch_size)
    feature_weight = float(check_number("feature_weight", feature_weight, minimum=0))
    matches = []
    if feature_weight > 0:
        matches = channel_matches(student, teacher, feature_layers, weight=feature_weight)
    fit_kwargs = dict(epochs=epochs, callbacks=list(callbacks or []), verbose=verbose)
    if validation_data is not None:
        fit_kwargs["validation_data"] = validation_data
    if y is not None or not hasattr(x, "element_spec"):
        fit_kwargs["batch_size"] = batch_size
    trainable = teacher.trainable
    try:
        distiller = Distiller(student=student, teacher=teacher, feature_matches=matches)
        distiller.compile(
            optimizer=optimizer if optimizer is not None else keras.optimizers.Adam(1e-3),
            metrics=["accuracy"],
            alpha=alpha,
            temperature=temperature,
        )
        distiller.fit(x, y, **fit_kwargs)
    finally:
        # The Distiller freezes the teacher; give it back as it came, so that it can be
        # pruned again (prune_channels keeps the `trainable` flags of the model it reads).
        teacher.trainable = trainable
    return student
