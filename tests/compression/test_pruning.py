import numpy as np
import pytest
from helpers import assert_message
from helpers import make_data
from helpers import make_mlp

from keras_distill._keras import GENERATION
from keras_distill._keras import IS_LEGACY
from keras_distill._keras import keras
from keras_distill.compression.pruning import prune
from keras_distill.compression.pruning import weight_sparsity

legacy_only = pytest.mark.skipif(not IS_LEGACY, reason="tf_keras behaviour")


class KeysSeen(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.keys = set()

    def on_epoch_end(self, epoch, logs=None):
        self.keys.update(logs or {})


def _zeros_expected(size, sparsity):
    # tfmot keeps round(size * (1 - s)) weights of largest magnitude (float32 arithmetic).
    kept = int(np.round(np.float32(size) * (np.float32(1) - np.float32(sparsity))))
    return size - kept


@pytest.mark.parametrize("target", [0.5, 0.8])
def test_distillation_aware_pruning_reaches_target_exactly(teacher, data, target):
    x, y = make_data(256, seed=5)
    student = make_mlp(16, "student", seed=2)
    before = [w.copy() for w in student.get_weights()]
    seen = KeysSeen()
    sparse = prune(
        student,
        x,
        y,
        teacher=teacher,
        target_sparsity=target,
        epochs=3,
        optimizer=keras.optimizers.Adam(0.02),
        callbacks=[seen],
    )
    assert "distillation_loss" in seen.keys  # trained by the Distiller
    assert not any("Prune" in type(layer).__name__ for layer in sparse.layers)
    kernels = [layer.kernel.numpy() for layer in sparse.layers if hasattr(layer, "kernel")]
    assert len(kernels) == 2
    for kernel in kernels:
        assert int(np.sum(kernel == 0)) == _zeros_expected(kernel.size, target)
    total = sum(int(np.sum(k == 0)) for k in kernels) / sum(k.size for k in kernels)
    assert weight_sparsity(sparse)["total"] == pytest.approx(total)
    for old, new in zip(before, student.get_weights()):  # the caller's model is untouched
        np.testing.assert_array_equal(old, new)
    accuracy = np.mean(np.asarray(sparse(x)).argmax(1) == y)
    assert accuracy > 0.5  # three classes; chance is about 0.4


def test_pruning_without_teacher_uses_labels(data):
    x, y = make_data(128, seed=6)
    seen = KeysSeen()
    sparse = prune(
        make_mlp(8, "student", seed=2),
        x,
        y,
        target_sparsity=0.6,
        epochs=2,
        batch_size=16,
        callbacks=[seen],
    )
    assert "distillation_loss" not in seen.keys and "loss" in seen.keys
    kernel = sparse.get_layer("student_hidden").kernel.numpy()
    assert int(np.sum(kernel == 0)) == _zeros_expected(kernel.size, 0.6)


def test_pruning_errors(data):
    x, y = data
    student = make_mlp(8, "student", seed=2)
    with pytest.raises(ValueError) as info:
        prune("student.keras", x, y)
    assert_message(
        info,
        "`student`",
        f"a keras.Model of the active Keras ({GENERATION})",
        "Received: student=builtins.str",
    )
    with pytest.raises(ValueError) as info:
        prune(student, x, y, target_sparsity=1.0)
    assert_message(info, "`target_sparsity`", "a number in [0, 1)", "Received: target_sparsity=1.0")
    with pytest.raises(ValueError) as info:
        prune(student, x[:8], y[:8], epochs=1, batch_size=8)
    assert_message(
        info,
        "Training is too short for the pruning schedule",
        "Train for more steps",
        "lower `frequency`",
        "Received: 1 steps, frequency=1",
    )


def test_weight_sparsity_counts_zeros_in_kernels_only():
    model = make_mlp(4, "m", seed=0)
    weights = model.get_weights()  # kernel (8, 4), bias (4,), kernel (4, 3), bias (3,)
    weights[0][:, :2] = 0.0  # 16 of 32
    weights[1][:] = 0.0  # biases are not counted
    weights[2][0, 0] = 0.0  # 1 of 12
    model.set_weights(weights)
    result = weight_sparsity(model)
    assert result["total"] == pytest.approx(17 / 44)
    assert sorted(result["weights"].values()) == pytest.approx([1 / 12, 0.5])


@legacy_only
def test_global_scope_is_keras3_only(data):
    x, y = data
    with pytest.raises(ValueError) as info:
        prune(make_mlp(8, "student", seed=2), x, y, scope="global")
    assert_message(
        info,
        "`scope='global'` is implemented for Keras 3 only",
        "Use scope='layer' on tf_keras",
        "Received: scope='global', GENERATION='tf_keras'",
    )
