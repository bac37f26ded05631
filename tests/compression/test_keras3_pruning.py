"""Keras 3 pruning without tfmot: exact sparsity, zeros through Adam, layers, nesting, options."""

import numpy as np
import pytest
from helpers import assert_message
from helpers import make_data
from helpers import make_mlp

from keras_distill._keras import IS_LEGACY
from keras_distill._keras import keras
from keras_distill.compression.pruning import prune
from keras_distill.compression.pruning import weight_sparsity

pytestmark = pytest.mark.skipif(IS_LEGACY, reason="the Keras 3 implementation")

if not IS_LEGACY:
    from keras_distill.compression.keras3 import ConstantSparsity
    from keras_distill.compression.keras3 import PolynomialDecay


def _zeros_expected(size, sparsity):
    kept = int(np.round(np.float32(size) * (np.float32(1) - np.float32(sparsity))))
    return size - kept


def _image_model():
    """Sequential inside Functional: Conv2D, DepthwiseConv2D, SeparableConv2D, Conv1D, Dense,
    EinsumDense."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 2))
    block = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2d"),
            keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise"),
            keras.layers.SeparableConv2D(8, 3, padding="same", name="separable"),
        ],
        name="block",
    )
    hidden = block(inputs)
    hidden = keras.layers.Reshape((64, 8))(hidden)
    hidden = keras.layers.Conv1D(6, 3, name="conv1d")(hidden)
    hidden = keras.layers.GlobalAveragePooling1D()(hidden)
    hidden = keras.layers.EinsumDense("ab,bc->ac", output_shape=12, bias_axes="c", name="einsum")(
        hidden
    )
    outputs = keras.layers.Dense(3, name="logits")(hidden)
    return keras.Model(inputs, outputs, name="image_model")


PRUNED = {  # layer name -> attribute of the pruned kernel
    "conv2d": "kernel",
    "depthwise": "kernel",
    "separable": "pointwise_kernel",
    "conv1d": "kernel",
    "einsum": "kernel",
    "logits": "kernel",
}


def _kernels(model):
    layers = {layer.name: layer for layer in model.layers}
    layers.update({layer.name: layer for layer in model.get_layer("block").layers})
    return {name: np.asarray(getattr(layers[name], attr)) for name, attr in PRUNED.items()}


def test_every_kernel_kind_is_pruned_exactly_in_nested_models():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 2)).astype("float32")
    y = rng.integers(0, 3, size=64)
    student = _image_model()
    sparse = prune(student, x, y, target_sparsity=0.75, epochs=3, batch_size=16, frequency=2)
    for name, kernel in _kernels(sparse).items():
        assert int(np.sum(kernel == 0)) == _zeros_expected(kernel.size, 0.75), name
    counted = weight_sparsity(sparse)["weights"]
    pointwise = [value for path, value in counted.items() if path.endswith("pointwise_kernel")]
    assert pointwise == [pytest.approx(_zeros_expected(64, 0.75) / 64)]
    separable = sparse.get_layer("block").get_layer("separable")
    assert np.all(np.asarray(separable.depthwise_kernel) != 0)  # not pruned, as tfmot
    assert sparse.get_layer("block").__class__.__name__ == "Sequential"
    for kernel in _kernels(student).values():  # the caller's model is untouched
        assert np.all(kernel != 0)


def test_sequential_student_comes_back_plain_with_its_constraints():
    keras.utils.set_random_seed(1)
    student = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(
                16, activation="relu", kernel_constraint=keras.constraints.MaxNorm(2), name="hidden"
            ),
            keras.layers.Dense(3, name="logits"),
        ]
    )
    x, y = make_data(128, seed=2)
    sparse = prune(student, x, y, target_sparsity=0.5, epochs=2, batch_size=16)
    assert [type(layer).__name__ for layer in sparse.layers] == ["Dense", "Dense"]
    assert isinstance(sparse.get_layer("hidden").kernel_constraint, keras.constraints.MaxNorm)
    assert (
        sparse.get_layer("hidden").kernel.constraint is sparse.get_layer("hidden").kernel_constraint
    )
    kernel = np.asarray(sparse.get_layer("hidden").kernel)
    assert int(np.sum(kernel == 0)) == 64
    assert np.all(np.sqrt(np.sum(kernel**2, axis=0)) <= 2 + 1e-5)  # MaxNorm still applied


class KernelLog(keras.callbacks.Callback):
    def __init__(self, layer_name):
        super().__init__()
        self.layer_name, self.kernels = layer_name, []

    def on_train_batch_end(self, batch, logs=None):
        layer = (
            self.model.student.get_layer(self.layer_name)
            if hasattr(self.model, "student")
            else self.model.get_layer(self.layer_name)
        )
        self.kernels.append(np.array(layer.kernel))


def test_pruned_weights_stay_zero_through_adam(teacher):
    x, y = make_data(256, seed=4)
    log = KernelLog("student_hidden")
    schedule = ConstantSparsity(0.6, begin_step=0, frequency=1000)  # one mask, at step 0
    prune(
        make_mlp(16, "student", seed=2),
        x,
        y,
        teacher=teacher,
        epochs=2,
        batch_size=16,
        optimizer=keras.optimizers.Adam(0.05),
        pruning_schedule=schedule,
        callbacks=[log],
    )
    assert len(log.kernels) == 32
    zeros = log.kernels[0] == 0
    assert int(zeros.sum()) == _zeros_expected(zeros.size, 0.6)
    for kernel in log.kernels:
        assert np.all(kernel[zeros] == 0.0)  # exactly zero after every Adam step
    assert np.any(log.kernels[-1][~zeros] != log.kernels[0][~zeros])  # the rest trained


def test_polynomial_schedule_matches_the_formula():
    schedule = PolynomialDecay(0.1, 0.9, begin_step=10, end_step=50, power=3, frequency=10)
    for step in range(70):
        update, sparsity = schedule(step)
        progress = min(1.0, max(0.0, (step - 10) / 40))
        assert sparsity == pytest.approx(0.9 + (0.1 - 0.9) * (1 - progress) ** 3)
        assert update == (10 <= step <= 50 and step % 10 == 0)
    assert ConstantSparsity(0.5, begin_step=4, end_step=-1, frequency=3)(100) == (True, 0.5)
    assert ConstantSparsity(0.5, begin_step=4, end_step=-1, frequency=3)(101) == (False, 0.5)


def test_block_sparsity_zeroes_whole_blocks(teacher):
    x, y = make_data(256, seed=5)
    sparse = prune(
        make_mlp(16, "student", seed=2),
        x,
        y,
        teacher=teacher,
        epochs=3,
        target_sparsity=0.5,
        block_size=(1, 4),
    )
    kernel = np.asarray(sparse.get_layer("student_hidden").kernel)  # (8, 16)
    blocks = kernel.reshape(8, 4, 4)
    block_zero = np.all(blocks == 0, axis=-1)
    assert int(block_zero.sum()) == 16  # half of the 32 blocks of 1x4
    assert np.all(np.any(blocks[~block_zero] != 0, axis=-1))
    sparse = prune(
        make_mlp(16, "student", seed=2), x, y, epochs=3, target_sparsity=0.5, block_size=(4, 1)
    )
    blocks = np.asarray(sparse.get_layer("student_hidden").kernel).reshape(2, 4, 16)
    assert int(np.all(blocks == 0, axis=1).sum()) == 16


def test_global_scope_keeps_the_largest_weights_of_the_whole_model():
    x, y = make_data(256, seed=5)
    student = make_mlp(16, "student", seed=2)
    weights = student.get_weights()
    weights[2] *= 4.0  # the output kernel's weights are larger: most of them are kept
    student.set_weights(weights)
    sparse = prune(
        student,
        x,
        y,
        epochs=3,
        target_sparsity=0.6,
        scope="global",
        optimizer=keras.optimizers.SGD(0.0),
    )  # frozen weights: a NumPy reference
    magnitudes = np.concatenate([np.abs(weights[0]).ravel(), np.abs(weights[2]).ravel()])
    kept = magnitudes.size - _zeros_expected(magnitudes.size, 0.6)
    threshold = np.sort(magnitudes)[::-1][kept - 1]
    for name, original in (("student_hidden", weights[0]), ("student_logits", weights[2])):
        kernel = np.asarray(sparse.get_layer(name).kernel)
        np.testing.assert_array_equal(kernel == 0, np.abs(original) < threshold)
    hidden_zeros = np.mean(np.asarray(sparse.get_layer("student_hidden").kernel) == 0)
    assert hidden_zeros > 0.6  # the small kernel took more than its share


def test_keras3_pruning_errors(data):
    x, y = data
    student = make_mlp(8, "student", seed=2)
    with pytest.raises(ValueError) as info:
        prune(student, x, y, block_size=(2, 2))
    assert_message(info, "`block_size`", "[(1, 1), (1, 4), (4, 1)]", "Received: block_size=(2, 2)")
    with pytest.raises(ValueError) as info:
        prune(student, x, y, scope="model")
    assert_message(info, "`scope`", "['layer', 'global']", "Received: scope='model'")
    with pytest.raises(ValueError) as info:
        prune(student, x, y, scope="global", block_size=(1, 4))
    assert_message(
        info,
        "`scope='global'`",
        "Use block_size=(1, 1), or scope='layer' for blocks",
        "Received: block_size=(1, 4), scope='global'",
    )
    with pytest.raises(ValueError) as info:
        prune(student, x, y, pruning_schedule=0.5)
    assert_message(
        info,
        "`pruning_schedule`",
        "`keras_distill.compression.keras3.PolynomialDecay`",
        "`ConstantSparsity`",
        "Received: pruning_schedule=0.5",
    )
    inputs = keras.Input((8,))
    no_kernels = keras.Model(inputs, keras.layers.Activation("relu")(inputs), name="plain")
    with pytest.raises(ValueError) as info:
        prune(no_kernels, x, y)
    assert_message(
        info, "`student` has no kernel", "Dense, EinsumDense", "Received: student='plain'"
    )
    with pytest.raises(ValueError) as info:
        PolynomialDecay(0.0, 0.5, begin_step=5, end_step=5)
    assert_message(
        info,
        "`end_step` must be greater than `begin_step`",
        "Received: end_step=5, begin_step=5",
    )
    with pytest.raises(ValueError) as info:
        ConstantSparsity(1.5, begin_step=0)
    assert_message(info, "`target_sparsity`", "a number in [0, 1)", "Received: target_sparsity=1.5")
