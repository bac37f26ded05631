import json
import logging

import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_message
from helpers import make_mlp
from helpers import reference_ece
from helpers import reference_softmax

from keras_distill import Distiller
from keras_distill._keras import keras
from keras_distill.evaluation import metrics
from keras_distill.evaluation import report as report_lib
from keras_distill.evaluation.latency import measure_latency

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_compare_numbers_against_numpy(data, teacher, student):
    x, y = data
    report = report_lib.compare(
        teacher, student, x, y, latency_batch_sizes=(1, 8), latency_repeats=2
    )
    teacher_logits = np.asarray(teacher(x, training=False), dtype=np.float64)
    student_logits = np.asarray(student(x, training=False), dtype=np.float64)
    agreement = np.mean(np.argmax(student_logits, 1) == np.argmax(teacher_logits, 1))
    assert agreement < 1.0
    row = report["student"]
    assert row["agreement"] == pytest.approx(agreement)
    assert report["teacher"]["agreement"] == 1.0
    assert row["accuracy"] == pytest.approx(np.mean(np.argmax(student_logits, 1) == y))
    assert report["teacher"]["accuracy"] == pytest.approx(
        np.mean(np.argmax(teacher_logits, 1) == y)
    )
    assert row["ece"] == pytest.approx(
        reference_ece(reference_softmax(student_logits), y), abs=1e-6
    )
    assert report["teacher"]["ece"] == pytest.approx(
        reference_ece(reference_softmax(teacher_logits), y), abs=1e-6
    )
    assert row["parameters"] == student.count_params() == 8 * 8 + 8 + 8 * 3 + 3
    assert report["teacher"]["file_size_bytes"] > row["file_size_bytes"] > 0
    assert set(row["latency"]) == {"batch_1", "batch_8"}
    assert row["latency"]["batch_8"]["min_ms"] <= row["latency"]["batch_8"]["median_ms"]
    text = str(report)
    assert "| teacher |" in text and "| student |" in text and "15 equal-width bins" in text


def test_compare_from_probabilities_and_others(data, teacher, student):
    x, y = data
    probs_teacher = keras.Sequential([teacher, keras.layers.Softmax()])
    report = report_lib.compare(
        probs_teacher,
        keras.Sequential([student, keras.layers.Softmax()]),
        x,
        y,
        others={"alone": keras.Sequential([student, keras.layers.Softmax()])},
        latency_repeats=0,
        from_logits=False,
        num_bins=10,
    )
    expected = reference_ece(reference_softmax(np.asarray(student(x), np.float64)), y, 10)
    assert report["alone"]["ece"] == pytest.approx(expected, abs=1e-6)
    assert [row["name"] for row in report.rows] == ["teacher", "student", "alone"]
    assert report["alone"]["latency"] == {}


def test_json_round_trip(tmp_path, data, teacher, student):
    x, y = data
    report = report_lib.compare(
        teacher, student, x, y, latency_repeats=0, history={"loss": [2.0, 1.0]}
    )
    path = report.save_json(tmp_path / "out" / "report.json")
    loaded = json.loads(open(path, encoding="utf-8").read())
    assert loaded["settings"]["num_bins"] == 15
    assert loaded["models"][1]["agreement"] == report["student"]["agreement"]
    again = report_lib.Report.from_json(report.to_json())
    assert again.rows == report.rows and again.history == {"loss": [2.0, 1.0]}


def _assert_png(path):
    with open(path, "rb") as handle:
        content = handle.read()
    assert len(content) > 1000
    assert content[:8] == PNG_SIGNATURE


def test_plots_are_written(tmp_path, data, teacher, student):
    x, y = data
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"])
    history = distiller.fit(x, y, epochs=2, batch_size=64, validation_data=(x, y), verbose=0)
    assert {"student_loss", "distillation_loss", "val_distillation_loss"} <= set(history.history)
    report = report_lib.compare(teacher, student, x, y, latency_repeats=0, history=history)
    _assert_png(report.plot_history(tmp_path / "plots" / "history.png"))
    _assert_png(report.plot_accuracy_vs_size(tmp_path / "size.png"))
    _assert_png(report.plot_accuracy_vs_size(tmp_path / "params.png", size_key="parameters"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_bins": 0}, "`num_bins` must be an integer >= 1. Received: num_bins=0"),
        (
            {"latency_repeats": -1},
            "`latency_repeats` must be an integer >= 0. Received: latency_repeats=-1",
        ),
        ({"others": {"teacher": None}}, "Received: others with key 'teacher'"),
        ({"others": {"x": "model"}}, "Received: x=builtins.str"),
        (
            {"y": np.zeros(3)},
            "`y` must hold one label per example of `x` (128). Received: y.shape=(3,)",
        ),
    ],
)
def test_compare_errors(data, teacher, student, kwargs, message):
    x, y = data
    arguments = {"y": y, "latency_repeats": 0, **kwargs}
    with pytest.raises(ValueError) as info:
        report_lib.compare(teacher, student, x, **arguments)
    assert str(info.value).endswith(message) or message in str(info.value)


def test_other_errors(tmp_path, data, teacher, student):
    x, y = data
    report = report_lib.compare(teacher, student, x, y, latency_repeats=0)
    with pytest.raises(
        ValueError, match="pass `history=` to `compare\\(\\)`. Received: history=None"
    ):
        report.plot_history(tmp_path / "h.png")
    with pytest.raises(ValueError, match="Received: size_key='bytes'"):
        report.plot_accuracy_vs_size(tmp_path / "s.png", size_key="bytes")
    with pytest.raises(ValueError) as error:
        measure_latency(student, x, batch_size=0)
    assert_message(error, "`batch_size`", "an integer >= 1", "Received: batch_size=0")
    with pytest.raises(ValueError, match=r"Received: probabilities.shape=\(4,\)"):
        metrics.expected_calibration_error(np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match=r"Received: reference_outputs.shape=\(2, 3\)"):
        metrics.top1_agreement(np.ones((2, 2)), np.ones((2, 3)))


def test_public_names():
    import keras_distill

    for name in (
        "compare",
        "Report",
        "DistillationScheduler",
        "report",
        "schedules",
        "augment",
        "transfer",
    ):
        assert name in keras_distill.__all__, name
    assert keras_distill.compare is report_lib.compare
    assert keras_distill.schedules.DistillationScheduler is keras_distill.DistillationScheduler


def test_saved_size_ignores_optimizer_state(tmp_path, data, student):
    x, y = data
    student.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    student.fit(x, y, epochs=1, verbose=0)
    student.save(tmp_path / "with_optimizer.keras")
    with_optimizer = (tmp_path / "with_optimizer.keras").stat().st_size
    fresh = make_mlp(8, "student", seed=2)  # the same architecture, never compiled
    fresh.set_weights(student.get_weights())
    fresh.save(tmp_path / "plain.keras")
    plain = (tmp_path / "plain.keras").stat().st_size
    assert with_optimizer > plain + 2000  # Adam state: two slots per weight and the iteration count
    # Equal up to the archive's metadata (names, dates), far below the size with the optimizer.
    assert abs(report_lib.saved_size(student) - plain) < 0.01 * plain


def _copy(model, name):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def test_compare_names_the_student_and_traces_no_function_twice(data, teacher, student, caplog):
    x, y = data
    others = {f"copy {index}": _copy(student, index) for index in range(4)}
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        # 100 rows in batches of 64: `predict` would trace two batch shapes per model.
        report = report_lib.compare(
            teacher,
            student,
            x[:100],
            y[:100],
            others=others,
            batch_size=64,
            latency_repeats=2,
            student_name="kept",
        )
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
    assert [row["name"] for row in report.rows] == ["teacher", "kept"] + list(others)
    for row in report.rows:
        assert set(row["latency"]) == {"batch_1", "batch_64"}
        assert row["accuracy"] == report["kept"]["accuracy"] or row["name"] == "teacher"
    with pytest.raises(ValueError, match="Received: others with key 'kept'"):
        report_lib.compare(
            teacher, student, x, y, others={"kept": student}, student_name="kept", latency_repeats=0
        )


def test_the_retracing_check_can_fail(caplog):
    """The check above sees TensorFlow's retracing warnings when there are some."""
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for size in range(1, 9):
            tf.function(lambda t: t * 2.0)(tf.zeros([size]))
    assert [r for r in caplog.records if "retracing" in r.getMessage()]
