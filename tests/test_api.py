import warnings

import pytest

import keras_distill

PUBLIC_API = [
    "AttentionMatch",
    "ChainReport",
    "Distiller",
    "DistillationScheduler",
    "ExportReport",
    "FeatureAdapter",
    "FeatureMatch",
    "GENERATION",
    "OnPolicyDistiller",
    "ParityError",
    "RecipeReport",
    "Report",
    "ShardedTeacherCache",
    "StopOnNonFinite",
    "TeacherCache",
    "augment",
    "callbacks",
    "chunked_distillation_loss",
    "compare",
    "compress",
    "compression",
    "data",
    "datasets",
    "distill",
    "evaluation",
    "export_tflite",
    "feature_losses",
    "gzip_size",
    "keras",
    "keras_quantize",
    "losses",
    "matching",
    "prune",
    "prune_channels",
    "quantization_aware_training",
    "recipe",
    "recover_channels",
    "report",
    "run_tflite",
    "saving",
    "schedules",
    "teachers",
    "tflite_latency",
    "transfer",
    "unquantizable_layers",
    "weight_sparsity",
    "__version__",
]
SUBPACKAGES = ("compression", "data", "evaluation", "matching", "recipe", "teachers")


def test_public_api_is_pinned():
    assert sorted(keras_distill.__all__) == sorted(PUBLIC_API)
    for name in keras_distill.__all__:
        assert hasattr(keras_distill, name), name


def test_public_names_are_documented():
    for name in keras_distill.__all__:
        value = getattr(keras_distill, name)
        if callable(value) or hasattr(value, "__file__"):
            assert (value.__doc__ or "").strip(), f"{name} has no docstring"


def test_public_losses():
    from keras_distill import losses

    for name in (
        "distillation_kl",
        "top_k_distillation_kl",
        "soft_target_cross_entropy",
        "logit_mse",
        "decoupled_kd",
        "hard_label_cross_entropy",
        "DistillationLoss",
        "DistillationKL",
        "SoftTargetCrossEntropy",
        "LogitMSE",
        "DecoupledKD",
        "reverse_kl",
        "generalized_jsd",
        "skew_kl",
        "skew_reverse_kl",
        "total_variation",
        "ReverseKL",
        "GeneralizedJSD",
        "SkewKL",
        "SkewReverseKL",
        "TotalVariation",
        "get",
        "names",
    ):
        assert callable(getattr(losses, name)), name


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_subpackages_re_export_what_they_list(subpackage):
    module = getattr(keras_distill, subpackage)
    assert (module.__doc__ or "").strip()
    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        assert hasattr(module, name), f"{subpackage}.{name}"


def test_top_level_names_are_the_subpackages_objects():
    assert keras_distill.compress is keras_distill.compression.compress
    assert keras_distill.TeacherCache is keras_distill.teachers.TeacherCache
    assert keras_distill.FeatureMatch is keras_distill.matching.FeatureMatch
    assert keras_distill.compare is keras_distill.evaluation.compare
    assert keras_distill.augment is keras_distill.data.augment
    assert keras_distill.distill is keras_distill.recipe.distill


def test_generation_export_is_public_in_compression():
    from keras_distill import compression

    for name in ("TFLiteGenerator", "export_generation_tflite"):
        assert name in compression.__all__, name
        assert (getattr(compression, name).__doc__ or "").strip(), name


def test_io_is_a_deprecated_alias_of_saving():
    with pytest.warns(DeprecationWarning, match="use `keras_distill.saving`"):
        module = keras_distill.io
    assert module is keras_distill.saving
    with pytest.warns(DeprecationWarning):
        from keras_distill import io  # noqa: F401


def test_unknown_attributes_raise_attribute_error():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
            keras_distill.nothing_here
