"""keras.applications CNNs as teacher and student: logits, features, attention transfer."""

import numpy as np
import pytest
import zoo_checks

from keras_distill import FeatureMatch
from keras_distill._keras import IS_LEGACY
from keras_distill._keras import keras

CLASSES = 4
SHAPE = (32, 32, 3)


def application(name, **kwargs):
    keras.utils.set_random_seed(0)
    build = getattr(keras.applications, name)
    return build(
        input_shape=SHAPE, weights=None, classes=CLASSES, classifier_activation=None, **kwargs
    )


# tf_keras names MobileNetV3's residual adds "expanded_conv_2/Add", Keras 3 "expanded_conv_2_add".
V3_ADD = "expanded_conv_2/Add" if IS_LEGACY else "expanded_conv_2_add"

# (teacher, student, student kwargs, feature matches: (student layer, teacher layer, loss)).
PAIRS = {
    "EfficientNetB0->MobileNetV2": (
        "EfficientNetB0",
        "MobileNetV2",
        {"alpha": 0.35},
        [
            ("Conv1_relu", "block2b_expand_activation", "mse"),  # 16x16x16 -> 8x8x144
            ("block_5_expand_relu", "block4a_expand_activation", "at"),  # 4x4: 96 vs 240
        ],
    ),
    "ResNet50->MobileNetV3Small": (
        "ResNet50",
        "MobileNetV3Small",
        {"minimalistic": True},
        [
            (V3_ADD, "conv3_block4_out", "mse"),  # 4x4x24 -> 4x4x512
            (V3_ADD, "conv2_block3_out", "at"),  # 4x4 vs 8x8
        ],
    ),
}


# The default tier keeps one pair and leaves XLA to the cheaper zoo models (about 80 s each here).
SLOW = {"EfficientNetB0->MobileNetV2"}


def params(slow_pairs, all_slow=False):
    return [
        pytest.param(pair, marks=[pytest.mark.slow] if all_slow or pair in slow_pairs else [])
        for pair in PAIRS
    ]


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, size=(16, *SHAPE)).astype("float32"), rng.integers(0, CLASSES, 16)


def match_name(student_layer, teacher_layer, loss):
    return f"{loss}_{student_layer}_{teacher_layer}".replace("/", "_")


def matches(pairs):
    return [FeatureMatch(s, t, loss=loss, name=match_name(s, t, loss)) for s, t, loss in pairs]


@pytest.mark.parametrize("pair", params(SLOW))
def test_logits_features_attention_reload_and_export(pair, images, tmp_path, record):
    teacher_name, student_name, kwargs, pairs = PAIRS[pair]
    x, y = images
    teacher, student = application(teacher_name), application(student_name, **kwargs)
    distiller, history = zoo_checks.fit(
        student, teacher, x, y, jit_compile=False, feature_matches=matches(pairs)
    )
    record(teacher_name, "teacher")
    record(student_name, "KD")
    for s, t, loss in pairs:
        assert match_name(s, t, loss) in history
    record(student_name, "features")
    record(student_name, "attention")
    adapter = distiller.adapters[match_name(*pairs[0])]
    assert (
        adapter.projection.get_weights()[0].shape[-1]
        == teacher.get_layer(pairs[0][1]).output.shape[-1]
    )
    zoo_checks.reloads(student, x, tmp_path)
    record(student_name, "reload")
    reports = zoo_checks.exports(student, x, tmp_path)
    assert reports["int8"].input_dtype == "float32"
    record(student_name, "float32 .tflite")
    record(student_name, "int8 .tflite")


@pytest.mark.parametrize("pair", params(SLOW, all_slow=True))
def test_fit_with_xla(pair, images, record):
    teacher_name, student_name, kwargs, pairs = PAIRS[pair]
    x, y = images
    teacher, student = application(teacher_name), application(student_name, **kwargs)
    _, history = zoo_checks.fit(
        student, teacher, x, y, jit_compile=True, feature_matches=matches(pairs)
    )
    assert len(history["loss"]) == 1
    record(student_name, "XLA")


legacy_only = pytest.mark.skipif(
    not IS_LEGACY, reason="tfmot pruning and QAT need TF_USE_LEGACY_KERAS=1"
)


@legacy_only
@pytest.mark.slow  # About 4 minutes here: tfmot wraps and clones every layer several times.
def test_prune_and_qat_mobilenet_v2(images, tmp_path, record):
    from keras_distill.compression.export import export_tflite
    from keras_distill.compression.pruning import prune
    from keras_distill.compression.pruning import weight_sparsity
    from keras_distill.compression.quantization import quantization_aware_training

    x, y = images
    student = application("MobileNetV2", alpha=0.35)
    sparse = prune(student, x, y, target_sparsity=0.5, epochs=2, batch_size=8)
    sparsity = weight_sparsity(sparse)
    assert sparsity["pruned_total"] == pytest.approx(0.5, abs=0.01)
    assert sparsity["left_dense"] and all("depthwise" in name for name in sparsity["left_dense"])
    record("MobileNetV2", "prune")
    qat = quantization_aware_training(sparse, x, y, epochs=1, batch_size=8)
    assert "QuantizeWrapperV2" in {type(layer).__name__ for layer in qat.layers}
    report = export_tflite(qat, tmp_path / "qat.tflite", quantization="int8", sample_inputs=x)
    assert report.num_samples == len(x)
    record("MobileNetV2", "QAT")


@legacy_only
def test_qat_names_the_layer_tfmot_rejects_in_mobilenet_v3(images, record):
    from keras_distill.compression.quantization import quantization_aware_training

    x, y = images
    model = application("MobileNetV3Small", minimalistic=True)
    (name,) = [layer.name for layer in model.layers if type(layer).__name__ == "Rescaling"]
    listed = rf"'{name}' \(Rescaling\)\. Pass"
    # The error without keep_float is tested on small models (compression/test_quantization.py).
    with pytest.raises(ValueError, match=rf"before a quantized layer: {listed} `preserve_sparsity"):
        quantization_aware_training(model, x, y, epochs=1, batch_size=8, keep_float=True)
    qat = quantization_aware_training(
        model, x, y, epochs=1, batch_size=8, keep_float=True, preserve_sparsity=False
    )
    classes = {layer.name: type(layer).__name__ for layer in qat.layers}
    assert classes[name] == "Rescaling"
    assert "QuantizeWrapperV2" in classes.values()
    record("MobileNetV3Small", "QAT")


@legacy_only
@pytest.mark.slow
def test_compress_mobilenet_v2_with_a_resnet50_teacher(images, tmp_path, record):
    from keras_distill.compression.chain import compress

    x, y = images
    teacher, student = application("ResNet50"), application("MobileNetV2", alpha=0.35)
    report = compress(
        student,
        x,
        y,
        x,
        y,
        teacher=teacher,
        output_dir=str(tmp_path / "chain"),
        distill_epochs=1,
        prune_epochs=2,
        qat_epochs=1,
        target_sparsity=0.5,
        batch_size=8,
        plot=False,
    )
    assert [row["stage"] for row in report.rows] == ["input", "distill", "prune", "qat", "tflite"]
    assert report["prune"]["sparsity"] > 0.3
    assert report.export_report.quantization == "int8"
    record("MobileNetV2", "compress()")
