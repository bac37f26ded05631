import keras_distill

PUBLIC_API = [
    "AttentionMatch", "ChainReport", "Distiller", "DistillationScheduler", "ExportReport",
    "FeatureAdapter", "FeatureMatch", "GENERATION", "ParityError", "Report", "StopOnNonFinite",
    "TeacherCache", "augment", "callbacks", "compare", "compress", "datasets", "export_tflite",
    "feature_losses", "gzip_size", "io", "keras_quantize", "losses", "prune",
    "quantization_aware_training", "report", "run_tflite", "schedules", "tflite_latency",
    "transfer", "unquantizable_layers", "weight_sparsity", "__version__",
]


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

    for name in ("distillation_kl", "soft_target_cross_entropy", "logit_mse", "decoupled_kd",
                 "hard_label_cross_entropy", "DistillationLoss", "DistillationKL",
                 "SoftTargetCrossEntropy", "LogitMSE", "DecoupledKD", "get"):
        assert callable(getattr(losses, name)), name
