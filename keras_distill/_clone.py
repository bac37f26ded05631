"""Copies of models with their weights: the stages and the recipe train copies, never yours."""

from keras_distill._keras import keras


def clone_with_weights(model, name="model", weights=None):
    """A new model with `model`'s architecture and its weights (or `weights`).

    Args:
        model: A Keras model that `keras.models.clone_model` can copy
            (Sequential, functional, or a subclass with `get_config`).
        name: The argument's name, for the error message.
        weights: The weights to set (a list as `get_weights` returns), or
            `None` for `model`'s own.

    Returns:
        The copy; `model` is left untouched.

    Raises:
        ValueError: When Keras cannot clone `model`.
    """
    try:
        copy = keras.models.clone_model(model)
    except Exception as error:  # noqa: BLE001 - Keras raises several types here.
        raise ValueError(
            f"`{name}` must be a model Keras can clone (Sequential, functional, or a subclass "
            "with get_config): it is trained as a copy so that yours stays untouched. "
            f"Received: {name}={model.name!r} ({type(error).__name__}: {error})"
        ) from error
    copy.set_weights(model.get_weights() if weights is None else weights)
    return copy
