"""`prune_channels`: whole filters and units removed, checked against NumPy and the full model."""

import numpy as np
import pytest

from keras_distill._keras import keras
from keras_distill.compression import export_tflite
from keras_distill.compression import prune_channels
from keras_distill.compression import run_tflite


def _relu(x):
    return np.maximum(x, 0.0)


def _zero_channels(layer, channels, rng=None):
    """Zeros the filters (kernel columns and bias) of `layer` at `channels`."""
    weights = layer.get_weights()
    weights[0][..., channels] = 0.0
    if len(weights) > 1:
        weights[1][channels] = 0.0
    layer.set_weights(weights)


def _silence_bn(layer, channels, rng):
    """Random statistics for a BatchNormalization, with gamma = beta = 0 at `channels`."""
    size = layer.get_weights()[0].shape[0]
    gamma, beta = rng.uniform(0.5, 1.5, size), rng.normal(size=size)
    mean, variance = rng.normal(size=size), rng.uniform(0.5, 2.0, size)
    gamma[channels], beta[channels] = 0.0, 0.0
    layer.set_weights([gamma, beta, mean, variance])


def _complement(channels, size):
    return np.setdiff1d(np.arange(size), channels)


def mlp():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(hidden))


def test_pruned_mlp_equals_a_numpy_forward_pass_of_the_largest_l1_units():
    model = mlp()
    kernel, bias, head, head_bias = model.get_weights()
    x = np.random.default_rng(1).normal(size=(5, 6)).astype("float32")
    pruned = prune_channels(model, fraction=0.5, round_to=4)
    kept = np.sort(np.argsort(-np.abs(kernel).sum(axis=0))[:8])  # NumPy: Li et al.'s L1
    expected = _relu(x @ kernel[:, kept] + bias[kept]) @ head[kept] + head_bias
    np.testing.assert_allclose(np.asarray(pruned(x)), expected, rtol=1e-5, atol=1e-5)
    assert pruned.get_layer("hidden").units == 8
    assert pruned.get_layer("logits").units == 3  # the output layer keeps its units
    assert pruned.count_params() == 6 * 8 + 8 + 8 * 3 + 3


def test_input_model_is_not_changed():
    model = mlp()
    before = [w.copy() for w in model.get_weights()]
    pruned = prune_channels(model, fraction=0.5)
    assert pruned is not model
    assert model.get_layer("hidden").units == 16
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_pruning_zero_filters_through_flatten_leaves_outputs_unchanged():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((40,)),
            keras.layers.Reshape((40, 1)),
            keras.layers.Conv1D(32, 3, activation="relu", name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu", name="hidden"),
            keras.layers.Dense(10, name="logits"),
        ]
    )
    rng = np.random.default_rng(0)
    dead_filters = rng.choice(32, 24, replace=False)
    dead_units = rng.choice(64, 48, replace=False)
    _zero_channels(model.get_layer("conv"), dead_filters)
    _zero_channels(model.get_layer("hidden"), dead_units)
    pruned = prune_channels(model, fraction=0.25)
    x = rng.normal(size=(8, 40)).astype("float32")
    np.testing.assert_allclose(np.asarray(pruned(x)), np.asarray(model(x)), atol=1e-5)
    assert isinstance(pruned, keras.Sequential)
    # Hand count: conv 3*1*8 + 8; Flatten gives 38 * 8; hidden 304*16 + 16; logits 16*10 + 10.
    assert pruned.count_params() == (24 + 8) + (304 * 16 + 16) + (16 * 10 + 10)
    kept = _complement(dead_filters, 32)
    np.testing.assert_array_equal(
        pruned.get_layer("conv").get_weights()[0],
        model.get_layer("conv").get_weights()[0][..., kept],
    )


def conv_bn_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for index in range(2):
        x = keras.layers.Conv2D(16, 3, padding="same", name=f"conv{index}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{index}")(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(x))


def test_bn_criterion_prunes_the_channels_with_zero_scale():
    model = conv_bn_model()
    rng = np.random.default_rng(2)
    silenced = {name: rng.choice(16, 8, replace=False) for name in ("bn0", "bn1")}
    for name, channels in silenced.items():
        _silence_bn(model.get_layer(name), channels, rng)
    x = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    pruned = prune_channels(model, fraction=0.5, criterion="bn")
    np.testing.assert_allclose(np.asarray(pruned(x)), np.asarray(model(x)), atol=1e-5)
    for index in range(2):
        kept = _complement(silenced[f"bn{index}"], 16)
        original = model.get_layer(f"bn{index}").get_weights()
        for new, old in zip(pruned.get_layer(f"bn{index}").get_weights(), original):
            np.testing.assert_array_equal(new, old[kept])
    # The L1 criterion ignores gamma: it keeps other channels, and the outputs change.
    by_l1 = prune_channels(model, fraction=0.5, criterion="l1")
    assert np.abs(np.asarray(by_l1(x)) - np.asarray(model(x))).max() > 1e-3


def residual_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU()(x)
    for block in range(2):
        y = keras.layers.Conv2D(16, 3, padding="same", name=f"b{block}_conv1")(x)
        y = keras.layers.BatchNormalization(name=f"b{block}_bn1")(y)
        y = keras.layers.ReLU()(y)
        y = keras.layers.Conv2D(16, 3, padding="same", name=f"b{block}_conv2")(y)
        y = keras.layers.BatchNormalization(name=f"b{block}_bn2")(y)
        x = keras.layers.Add(name=f"b{block}_add")([x, y])
        x = keras.layers.ReLU()(x)
    side = keras.layers.Conv2D(8, 1, name="side")(x)
    x = keras.layers.Concatenate(name="concat")([x, side])
    x = keras.layers.Conv2D(16, 1, name="head_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="logits")(x))


TIED = ("stem", "b0_conv2", "b1_conv2")


def test_add_tied_channels_are_ranked_by_their_summed_l1_and_pruned_together():
    model = residual_model()
    rng = np.random.default_rng(3)
    # Each tied layer alone would rank the channels differently.
    for name in TIED:
        layer = model.get_layer(name)
        kernel, _ = layer.get_weights()
        layer.set_weights([kernel * rng.uniform(0.0, 2.0, 16), rng.normal(size=16)])
    l1 = {n: np.abs(model.get_layer(n).get_weights()[0]).sum(axis=(0, 1, 2)) for n in TIED}
    expected = np.sort(np.argsort(-sum(l1.values()))[:8])
    alone = [np.sort(np.argsort(-score)[:8]) for score in l1.values()]
    assert any(not np.array_equal(expected, one) for one in alone)
    pruned = prune_channels(model, fraction=0.5)
    np.testing.assert_array_equal(
        pruned.get_layer("stem").get_weights()[0],
        model.get_layer("stem").get_weights()[0][..., expected],
    )
    for name in TIED:
        np.testing.assert_array_equal(
            pruned.get_layer(name).get_weights()[1],
            model.get_layer(name).get_weights()[1][expected],
        )
    # head_conv reads the concatenation of the 8 tied channels kept and the 8 of
    # `side` (kept whole: no more than round_to), and keeps its own 8 largest filters.
    original_head = model.get_layer("head_conv").get_weights()[0]
    rows = np.concatenate([expected, 16 + np.arange(8)])
    columns = np.sort(np.argsort(-np.abs(original_head).sum(axis=(0, 1, 2)))[:8])
    np.testing.assert_array_equal(
        pruned.get_layer("head_conv").get_weights()[0], original_head[:, :, rows][..., columns]
    )


def test_pruning_zero_residual_channels_leaves_outputs_unchanged():
    model = residual_model()
    rng = np.random.default_rng(4)
    dead = rng.choice(16, 8, replace=False)
    for name in TIED:
        _zero_channels(model.get_layer(name), dead)
        _silence_bn(
            model.get_layer(f"{name}_bn" if name == "stem" else name.replace("conv", "bn")),
            dead,
            rng,
        )
    for name in ("b0_conv1", "b1_conv1"):
        inner = rng.choice(16, 8, replace=False)
        _zero_channels(model.get_layer(name), inner)
        _silence_bn(model.get_layer(name.replace("conv", "bn")), inner, rng)
    _zero_channels(model.get_layer("head_conv"), rng.choice(16, 8, replace=False))
    x = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    pruned = prune_channels(model, fraction=0.5)
    np.testing.assert_allclose(np.asarray(pruned(x)), np.asarray(model(x)), atol=1e-5)
    assert {pruned.get_layer(name).filters for name in TIED} == {8}
    assert pruned.get_layer("b0_add").output.shape[-1] == 8
    assert pruned.get_layer("concat").output.shape[-1] == 16  # `side` has 8: kept whole


@pytest.mark.parametrize("fraction, expected", [(0.25, 8), (0.4, 16), (0.6, 16), (1.0, 32)])
def test_channel_counts_are_rounded_to_a_multiple(fraction, expected):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(32, name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    assert prune_channels(model, fraction=fraction).get_layer("hidden").units == expected
    assert prune_channels(model, fraction=0.4, round_to=1).get_layer("hidden").units == 13


def test_fraction_one_rebuilds_an_equal_model():
    model = residual_model()
    x = np.random.default_rng(5).normal(size=(2, 8, 8, 3)).astype("float32")
    same = prune_channels(model, fraction=1.0)
    assert same.count_params() == model.count_params()
    np.testing.assert_allclose(np.asarray(same(x)), np.asarray(model(x)), atol=1e-6)


def test_mobilenet_v2_gets_smaller_and_keeps_its_outputs_at_fraction_one():
    model = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10
    )
    x = np.random.default_rng(6).uniform(-1, 1, size=(2, 32, 32, 3)).astype("float32")
    pruned = prune_channels(model, fraction=0.5)
    assert pruned.count_params() < 0.6 * model.count_params()
    assert pruned.output.shape[-1] == 10
    assert np.all(np.isfinite(np.asarray(pruned(x))))
    for layer in pruned.layers:
        if isinstance(layer, keras.layers.Conv2D) and not isinstance(
            layer, keras.layers.DepthwiseConv2D
        ):
            original = model.get_layer(layer.name).filters
            assert layer.filters % 8 == 0 and layer.filters <= original, layer.name
    same = prune_channels(model, fraction=1.0)
    np.testing.assert_allclose(np.asarray(same(x)), np.asarray(model(x)), atol=1e-5)


def test_pruned_model_saves_loads_and_exports(tmp_path):
    model = residual_model()
    pruned = prune_channels(model, fraction=0.5)
    x = np.random.default_rng(7).normal(size=(6, 8, 8, 3)).astype("float32")
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(pruned(x)), atol=1e-6)
    report = export_tflite(pruned, str(tmp_path / "pruned.tflite"), sample_inputs=x)
    np.testing.assert_allclose(
        run_tflite(str(tmp_path / "pruned.tflite"), x), np.asarray(pruned(x)), atol=1e-4
    )
    # Smaller than the float32 weights of the unpruned model alone.
    assert report.file_size_bytes < 4 * model.count_params()


@pytest.mark.parametrize("fraction", [0, 0.0, -0.5, 1.5, float("nan"), True, "half"])
def test_fraction_outside_zero_one_is_refused(fraction):
    with pytest.raises(ValueError, match=r"`fraction` must be a number in \(0, 1\].*kept") as e:
        prune_channels(mlp(), fraction=fraction)
    assert str(e.value).endswith(f"Received: fraction={fraction!r}")


@pytest.mark.parametrize("round_to", [0, -8, 2.5, True, "8"])
def test_invalid_round_to_is_refused(round_to):
    with pytest.raises(ValueError, match=r"`round_to` must be an integer >= 1") as e:
        prune_channels(mlp(), round_to=round_to)
    assert str(e.value).endswith(f"Received: round_to={round_to!r}")


def test_unknown_criterion_is_refused():
    with pytest.raises(ValueError, match=r"`criterion` must be one of \['l1', 'bn'\].*'l2'"):
        prune_channels(mlp(), criterion="l2")


def test_lambda_layer_is_refused_and_named():
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(16, name="hidden")(inputs)
    hidden = keras.layers.Lambda(lambda t: t * 2.0, name="double")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(3)(hidden))
    with pytest.raises(ValueError, match=r"cannot follow layer 'double' \(Lambda\).*Received:"):
        prune_channels(model)


class Scale(keras.layers.Layer):
    def call(self, inputs):
        return inputs * 2.0


def test_custom_layer_is_refused_and_named():
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(16, name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(Scale(name="scale")(hidden)))
    with pytest.raises(ValueError, match=r"'scale' \(Scale\): it is not a built-in Keras layer"):
        prune_channels(model)


def test_reshape_that_mixes_channels_keeps_them_whole_and_says_so():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(16, name="hidden")(inputs)
    mixed = keras.layers.Reshape((4, 4), name="fold")(hidden)
    mixed = keras.layers.Dense(8, name="inner")(mixed)
    flat = keras.layers.Flatten()(mixed)
    model = keras.Model(inputs, keras.layers.Dense(3)(flat))
    with pytest.warns(
        UserWarning, match=r"keeps some channels whole: .*'hidden'.*'fold' \(Reshape\)"
    ):
        pruned = prune_channels(model, fraction=0.5, round_to=4)
    assert pruned.get_layer("hidden").units == 16
    assert pruned.get_layer("inner").units == 4  # after the Reshape, pruning goes on


def test_shared_layer_is_refused_and_named():
    inputs = keras.Input((6,))
    shared = keras.layers.Dense(6, name="shared")
    model = keras.Model(inputs, keras.layers.Dense(3)(shared(shared(inputs))))
    with pytest.raises(ValueError, match=r"layer 'shared' \(Dense\): it is called 2 times"):
        prune_channels(model)


def test_a_model_that_is_not_built_is_refused():
    with pytest.raises(ValueError, match=r"`model` is not built"):
        prune_channels(keras.Sequential([keras.layers.Dense(4)]))
