import keras_distill


def test_public_api_is_pinned():
    assert set(keras_distill.__all__) >= {"Distiller", "GENERATION", "datasets", "losses", "__version__"}
    for name in keras_distill.__all__:
        assert hasattr(keras_distill, name), name


def test_public_losses():
    from keras_distill import losses

    for name in ("distillation_kl", "soft_target_cross_entropy", "logit_mse", "decoupled_kd",
                 "hard_label_cross_entropy", "DistillationLoss", "DistillationKL",
                 "SoftTargetCrossEntropy", "LogitMSE", "DecoupledKD", "get"):
        assert callable(getattr(losses, name)), name
