import numpy as np
import pytest
from helpers import assert_message

from keras_distill import AttentionMatch
from keras_distill import Distiller
from keras_distill import FeatureMatch
from keras_distill._keras import keras

CLASSES = 3


def image_data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 1)).astype("float32")
    return x, (x[:, :4].mean(axis=(1, 2, 3)) > 0).astype("int32") + (
        x[:, :, :4].mean(axis=(1, 2, 3)) > 0
    )


def cnn(prefix, filters, seed, pool_first=False):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{prefix}_block1")(
        inputs
    )
    if pool_first:
        x = keras.layers.MaxPooling2D(name=f"{prefix}_pool")(x)
    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{prefix}_block2")(
        x
    )
    x = keras.layers.GlobalAveragePooling2D(name=f"{prefix}_gap")(x)
    x = keras.layers.Dense(8, activation="relu", name=f"{prefix}_embed")(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name=f"{prefix}_logits")(x), name=prefix)


@keras.saving.register_keras_serializable(package="tests")
class PaddingMask(keras.layers.Layer):
    """`(batch, L)` token ids -> `(batch, L, L)` mask: both positions are tokens (id != 0)."""

    def call(self, tokens):
        keep = tokens != 0
        return keep[:, :, None] & keep[:, None, :]


def transformer(prefix, layers, heads, seed):
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((6,), dtype="int32")
    mask = PaddingMask(name=f"{prefix}_padding")(tokens)
    x = keras.layers.Embedding(10, 8, name=f"{prefix}_embedding")(tokens)
    for i in range(layers):
        x = x + keras.layers.MultiHeadAttention(heads, 4, name=f"{prefix}_mha_{i}")(
            x, x, attention_mask=mask
        )
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, keras.layers.Dense(CLASSES, name=f"{prefix}_logits")(x), name=prefix)


def token_data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, 10, size=(n, 6)).astype("int32")
    tokens[::2, 4:] = 0  # padding
    return tokens, (tokens[:, 0] % CLASSES).astype("int32")


def compiled(distiller, **kwargs):
    distiller.compile(optimizer=keras.optimizers.Adam(0.01), alpha=0.5, temperature=2.0, **kwargs)
    return distiller


def test_one_teacher_and_one_student_call_per_step():
    calls = {"student": 0, "teacher": 0}

    class Counting(keras.Model):
        def __init__(self, role, filters):
            super().__init__(name=role)
            self.role = role
            self.conv = keras.layers.Conv2D(filters, 3, padding="same", name=f"{role}_conv")
            self.pool = keras.layers.GlobalAveragePooling2D(name=f"{role}_gap")
            self.head = keras.layers.Dense(CLASSES, name=f"{role}_head")

        def call(self, inputs, training=False):
            calls[self.role] += 1
            return self.head(self.pool(self.conv(inputs)))

    x, y = image_data()
    student, teacher = Counting("student", 4), Counting("teacher", 6)
    student(x[:1]), teacher(x[:1])
    distiller = compiled(
        Distiller(
            student=student,
            teacher=teacher,
            feature_matches=[
                FeatureMatch("student_conv", "teacher_conv", loss="mse"),
                FeatureMatch("student_conv", "teacher_conv", loss="at", name="at"),
                FeatureMatch("student_gap", "teacher_gap", loss="rkd_distance"),
            ],
        ),
        run_eagerly=True,
    )
    distiller.build_adapters(x[:4])
    calls.update(student=0, teacher=0)
    logs = distiller.train_step((x, y))
    assert calls == {"student": 1, "teacher": 1}
    assert {"mse_student_conv", "at", "rkd_distance_student_gap"} <= set(logs)


def test_captured_features_equal_the_layers_outputs():
    x, y = image_data()
    student, teacher = cnn("s", 4, 1), cnn("t", 6, 2)
    distiller = Distiller(
        student=student,
        teacher=teacher,
        feature_matches=[FeatureMatch("s_block2", "t_block2", loss="mse")],
    )
    _, _, teacher_features = distiller._teacher_forward(x)
    with distiller._student_capture.recording() as student_features:
        student(x)
    probe = keras.Model(student.inputs[0], student.get_layer("s_block2").output)
    np.testing.assert_allclose(student_features[("s_block2", "output")], probe(x), rtol=1e-6)
    probe = keras.Model(teacher.inputs[0], teacher.get_layer("t_block2").output)
    np.testing.assert_allclose(teacher_features[("t_block2", "output")], probe(x), rtol=1e-6)


def test_captured_attention_equals_the_layers_scores():
    tokens, _ = token_data()
    teacher = transformer("t", 2, 4, 1)
    student = transformer("s", 1, 2, 2)
    distiller = Distiller(
        student=student, teacher=teacher, attention_matches=[AttentionMatch("s_mha_0", "t_mha_1")]
    )
    _, _, features = distiller._teacher_forward(tokens)
    scores, mask = features[("t_mha_1", "attention")]
    assert tuple(scores.shape) == (32, 4, 6, 6)
    layer = teacher.get_layer("t_mha_1")
    hidden = keras.Model(teacher.inputs[0], teacher.get_layer("t_mha_0").output)(tokens)
    hidden = hidden + keras.Model(teacher.inputs[0], teacher.get_layer("t_embedding").output)(
        tokens
    )
    keep = tokens != 0
    padding = keep[:, :, None] & keep[:, None, :]
    _, expected = layer(hidden, hidden, attention_mask=padding, return_attention_scores=True)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(mask, bool), padding)
    assert np.allclose(np.asarray(scores)[0, :, :4, 4:], 0.0)


def test_fitnets_hint_with_adapters_trains_student_and_adapter_only(tmp_path):
    x, y = image_data()
    student, teacher = cnn("s", 4, 1, pool_first=True), cnn("t", 6, 2)
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    distiller = compiled(
        Distiller(
            student=student,
            teacher=teacher,
            feature_matches=[
                FeatureMatch("s_block2", "t_block2", loss="hint"),
                FeatureMatch("s_embed", "t_embed", loss="cosine", weight=0.5),
            ],
        )
    )
    adapter = distiller.adapters["hint_s_block2"]
    before = [w.copy() for w in adapter.get_weights()]
    assert adapter.get_weights()[0].shape == (1, 1, 4, 6)  # 1x1 conv, 4 -> 6 channels
    history = distiller.fit(x, y, epochs=3, batch_size=16, verbose=0).history
    assert history["hint_s_block2"][-1] < history["hint_s_block2"][0]
    assert "cosine_s_embed" in history
    assert any(not np.array_equal(b, a) for b, a in zip(before, adapter.get_weights()))
    for b, a in zip(teacher_weights, teacher.get_weights()):
        assert np.array_equal(b, a)
    path = str(tmp_path / "student.keras")
    student.save(path)
    reloaded = keras.models.load_model(path)
    assert sorted(tuple(w.shape) for w in reloaded.weights) == sorted(
        tuple(w.shape) for w in student.weights
    )
    assert reloaded.count_params() == student.count_params()


def test_total_loss_adds_weighted_matches(teacher_student_images=None):
    x, y = image_data()
    student, teacher = cnn("s", 4, 1), cnn("t", 4, 2)
    plain = compiled(Distiller(student=student, teacher=teacher))
    base = plain.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    distiller = compiled(
        Distiller(
            student=student,
            teacher=teacher,
            feature_matches=[FeatureMatch("s_block2", "t_block2", loss="mse", weight=2.0)],
        )
    )
    logs = distiller.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    s_feature = keras.Model(student.inputs[0], student.get_layer("s_block2").output)(x).numpy()
    t_feature = keras.Model(teacher.inputs[0], teacher.get_layer("t_block2").output)(x).numpy()
    mse = ((s_feature - t_feature) ** 2).reshape(32, -1).mean()
    np.testing.assert_allclose(logs["mse_s_block2"], mse, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], base["loss"] + 2.0 * mse, rtol=1e-5)


# XLA with attention matches is also run by tests/zoo/test_text.py::test_bert_fit_with_xla.
@pytest.mark.parametrize("jit_compile", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_attention_transfer_between_transformers(jit_compile):
    tokens, y = token_data()
    teacher_layers = ["t_mha_0", "t_mha_1", "t_mha_2", "t_mha_3"]
    matches = AttentionMatch.uniform(["s_mha_0", "s_mha_1"], teacher_layers)
    assert [(m.student_layer, m.teacher_layer) for m in matches] == [
        ("s_mha_0", "t_mha_1"),
        ("s_mha_1", "t_mha_3"),
    ]
    final = {}
    for weight in (0.0, 100.0):
        teacher = transformer("t", 4, 4, 1)
        student = transformer("s", 2, 2, 2)
        matches = AttentionMatch.uniform(["s_mha_0", "s_mha_1"], teacher_layers, weight=weight)
        matches.append(
            AttentionMatch("s_mha_1", "t_mha_3", loss="mse", weight=weight, name="attention_mse")
        )
        distiller = compiled(
            Distiller(student=student, teacher=teacher, attention_matches=matches),
            jit_compile=jit_compile,
        )
        history = distiller.fit(tokens, y, epochs=6, batch_size=16, verbose=0).history
        for name in ("attention_kl_s_mha_0", "attention_kl_s_mha_1", "attention_mse"):
            assert np.all(np.isfinite(history[name])) and min(history[name]) >= 0.0
        final[weight] = distiller.evaluate(tokens, y, verbose=0, return_dict=True)
    # Heads differ (4 vs 2): averaged. The matched student stays closer to the teacher.
    for name in ("attention_kl_s_mha_0", "attention_kl_s_mha_1", "attention_mse"):
        assert final[100.0][name] < final[0.0][name]


def test_subclassed_and_nested_models():
    x, y = image_data()

    class Student(keras.Model):
        def __init__(self):
            super().__init__(name="sub_student")
            self.body = keras.layers.Conv2D(4, 3, padding="same", name="body")
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.head = keras.layers.Dense(CLASSES)

        def call(self, inputs):
            return self.head(self.pool(self.body(inputs)))

    inner = cnn("inner", 6, 3)
    outer_in = keras.Input((8, 8, 1))
    teacher = keras.Model(outer_in, inner(outer_in), name="outer")
    student = Student()
    student(x[:1])
    distiller = compiled(
        Distiller(
            student=student,
            teacher=teacher,
            feature_matches=[FeatureMatch("body", "inner/inner_block2", loss="mse")],
        )
    )
    history = distiller.fit(x, y, epochs=2, batch_size=16, verbose=0).history
    assert "mse_body" in history
    assert distiller.adapters["mse_body"].get_weights()[0].shape == (1, 1, 4, 6)


def test_missing_layer_lists_existing_names():
    student, teacher = cnn("s", 4, 1), cnn("t", 6, 2)
    with pytest.raises(ValueError) as error:
        Distiller(
            student=student, teacher=teacher, feature_matches=[FeatureMatch("s_block9", "t_block2")]
        )
    assert_message(
        error,
        "No such layer: 's_block9' in the student 's'",
        "'s_block1', 's_block2', 's_gap', 's_embed', 's_logits'",
        "Received: student_layer='s_block9'",
    )


def test_attention_match_needs_attention_layers():
    student, teacher = cnn("s", 4, 1), cnn("t", 6, 2)
    with pytest.raises(ValueError) as error:
        Distiller(
            student=student,
            teacher=teacher,
            attention_matches=[AttentionMatch("s_block1", "t_block1")],
        )
    assert_message(
        error,
        "keras.layers.MultiHeadAttention",
        "keras.layers.Softmax",
        "Received: student_layer='s_block1' of type Conv2D",
    )


def test_match_argument_errors():
    with pytest.raises(ValueError) as error:
        FeatureMatch("a", "b", loss="l3")
    assert str(error.value).startswith("Unknown feature loss: 'l3'. Valid names are: [")
    with pytest.raises(ValueError, match=r"Received: adapter='linear'"):
        FeatureMatch("a", "b", adapter="linear")
    student, teacher = cnn("s", 4, 1), cnn("t", 6, 2)
    with pytest.raises(ValueError, match=r"duplicate or reserved names \['mse_s_block2'\]"):
        Distiller(
            student=student,
            teacher=teacher,
            feature_matches=[
                FeatureMatch("s_block2", "t_block2"),
                FeatureMatch("s_block2", "t_block1"),
            ],
        )


def test_matches_survive_the_distiller_config():
    student, teacher = transformer("s", 1, 2, 2), transformer("t", 2, 4, 1)
    distiller = Distiller(
        student=student,
        teacher=teacher,
        attention_matches=[AttentionMatch("s_mha_0", "t_mha_1", loss="mse", weight=2.0)],
        feature_matches=[FeatureMatch("s_embedding", "t_embedding", loss="cosine")],
    )
    rebuilt = Distiller.from_config(distiller.get_config())
    assert [m.get_config() for m in rebuilt.matches] == [m.get_config() for m in distiller.matches]
    assert [type(m) for m in rebuilt.matches] == [FeatureMatch, AttentionMatch]
