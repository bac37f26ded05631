"""tensorflow-model-optimization (tfmot), imported only where used and only on tf_keras.

On Keras 3 pruning and QAT run `keras_distill.compression.keras3` instead.
"""

from keras_distill._keras import GENERATION
from keras_distill._keras import IS_LEGACY

_INSTALL_HINT = (
    "Install it with `pip install 'keras-distill[legacy]'` "
    "or `pip install tensorflow-model-optimization tf-keras`."
)


def require_legacy(feature):
    """Raises the ValueError that explains how to switch to the tf_keras generation."""
    if not IS_LEGACY:
        raise ValueError(
            f"`{feature}` uses tensorflow-model-optimization, which works only with the legacy "
            "Keras generation (tf_keras). Set the environment variable TF_USE_LEGACY_KERAS=1 "
            "before importing keras_distill and build the models with tf_keras; on Keras 3, "
            "`prune` and `quantization_aware_training` run keras_distill's own implementation. "
            f"Received: GENERATION={GENERATION!r}"
        )


def import_tfmot(feature):
    """The `tensorflow_model_optimization` module, after checking the generation."""
    require_legacy(feature)
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError as error:
        raise ImportError(
            f"`{feature}` needs tensorflow-model-optimization. {_INSTALL_HINT}"
        ) from error
    return tfmot
