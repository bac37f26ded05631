"""keras_hub transformers (random weights, tiny sizes): dict inputs with padding,
attention matches across head and layer counts, hidden states across widths."""

import numpy as np
import pytest
import zoo_checks

from keras_distill import AttentionMatch
from keras_distill import FeatureMatch
from keras_distill._keras import IS_LEGACY
from keras_distill.compression.export import export_tflite
from keras_distill.compression.litert import load_interpreter

pytestmark = pytest.mark.skipif(
    IS_LEGACY, reason="keras_hub is built on Keras 3; tf_keras has no keras_hub"
)

CLASSES = 3
VOCABULARY = 50
LENGTH = 12


@pytest.fixture(scope="module")
def hub():
    return pytest.importorskip(
        "keras_hub", reason="the zoo extra: pip install 'keras-distill[zoo]'"
    )


def classifier(hub, family, layers, heads, hidden, name):
    from keras_distill._keras import keras

    keras.utils.set_random_seed(0)
    backbone = getattr(hub.models, f"{family}Backbone")(
        vocabulary_size=VOCABULARY,
        num_layers=layers,
        num_heads=heads,
        hidden_dim=hidden,
        intermediate_dim=2 * hidden,
        max_sequence_length=LENGTH,
        name=f"{name}_backbone",
    )
    task = getattr(hub.models, f"{family}TextClassifier")
    return task(backbone=backbone, num_classes=CLASSES, preprocessor=None, name=name)


def tokens(with_segments, n=16, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, LENGTH + 1, size=(n, 1))
    mask = (np.arange(LENGTH)[None] < lengths).astype("int32")
    x = {
        "token_ids": (rng.integers(1, VOCABULARY, size=(n, LENGTH)) * mask).astype("int32"),
        "padding_mask": mask,
    }
    if with_segments:
        x["segment_ids"] = np.zeros((n, LENGTH), "int32")
    return x, rng.integers(0, CLASSES, size=n)


def attention_layers(count):
    return [f"transformer_layer_{i}/self_attention_layer" for i in range(count)]


def text_matches(loss="kl"):
    """Student layers 0, 1 <- teacher layers 1, 3 (heads 2 vs 4); hidden 32 -> 64."""
    return dict(
        attention_matches=AttentionMatch.uniform(
            attention_layers(2), attention_layers(4), loss=loss
        ),
        feature_matches=[FeatureMatch("transformer_layer_1", "transformer_layer_3")],
    )


# (teacher family, student family, segment ids in the inputs)
PAIRS = {
    "Bert->Bert": ("Bert", "Bert", True),
    "Roberta->DistilBert": ("Roberta", "DistilBert", False),
}


# Roberta->DistilBert takes the same path as Bert->Bert with other families: the slow tier.
@pytest.mark.parametrize(
    "pair",
    [
        pytest.param(pair, marks=[pytest.mark.slow] if pair == "Roberta->DistilBert" else [])
        for pair in PAIRS
    ],
)
def test_attention_and_hidden_states_reload_and_export(pair, hub, tmp_path, record):
    teacher_family, student_family, segments = PAIRS[pair]
    x, y = tokens(segments)
    teacher = classifier(hub, teacher_family, 4, 4, 64, "teacher")
    student = classifier(hub, student_family, 2, 2, 32, "student")
    distiller, history = zoo_checks.fit(student, teacher, x, y, jit_compile=False, **text_matches())
    record(f"keras_hub {teacher_family}TextClassifier", "teacher")
    name = f"keras_hub {student_family}TextClassifier"
    record(name, "KD")
    assert distiller.adapters["mse_transformer_layer_1"].get_weights()[0].shape == (32, 64)
    record(name, "features")
    for layer in attention_layers(2):
        assert np.isfinite(history[f"attention_kl_{layer.replace('/', '_')}"][0])
    record(name, "attention")
    zoo_checks.reloads(student, x, tmp_path)
    record(name, "reload")
    reports = zoo_checks.exports(student, x, tmp_path)
    signature = load_interpreter(tmp_path / "int8.tflite").get_signature_list()
    assert signature["serving_default"]["inputs"] == sorted(x)
    assert reports["float32"].input_dtype.startswith("padding_mask: int32")
    record(name, "float32 .tflite")
    record(name, "int8 .tflite")


def test_bert_fit_with_xla(hub, record):
    x, y = tokens(True)
    teacher = classifier(hub, "Bert", 4, 4, 64, "teacher")
    student = classifier(hub, "Bert", 2, 2, 32, "student")
    _, history = zoo_checks.fit(student, teacher, x, y, jit_compile=True, **text_matches("mse"))
    assert len(history["loss"]) == 1
    record("keras_hub BertTextClassifier", "XLA")


def test_backbone_with_two_named_outputs_exports_both(hub, tmp_path, record):
    backbone = classifier(hub, "Bert", 2, 2, 32, "student").backbone
    x, _ = tokens(True)
    report = export_tflite(
        backbone,
        tmp_path / "backbone.tflite",
        sample_inputs=x,
        max_abs_diff_threshold=zoo_checks.FLOAT32_MAX_DIFF,
    )
    assert sorted(report.per_output) == ["pooled_output", "sequence_output"]
    assert report.tflite_outputs["sequence_output"].shape == (16, LENGTH, 32)
    signature = load_interpreter(tmp_path / "backbone.tflite").get_signature_list()
    assert signature["serving_default"]["outputs"] == ["pooled_output", "sequence_output"]
    record("keras_hub BertBackbone", "float32 .tflite")
