"""`distill()`: the recipe end to end, its guarantee, its report and its argument checks."""

import contextlib
import io
import json

import numpy as np
import pytest
import tensorflow as tf
from helpers import NUM_CLASSES
from helpers import make_data
from helpers import make_mlp

import keras_distill
from keras_distill import RecipeReport
from keras_distill import distill
from keras_distill._keras import keras
from keras_distill.recipe import inputs
from keras_distill.recipe import pipeline

FAST = {
    "epochs": 6,
    "patience": 3,
    "batch_size": 32,
    "transfer_batch_size": 64,
    "learning_rate": 0.01,
    "verbose": 0,
}


def numpy_accuracy(model, x, y):
    """Accuracy from the model's raw outputs, computed here with NumPy only."""
    logits = np.asarray(model(tf.constant(x), training=False))
    return float(np.mean(np.argmax(logits, axis=-1) == y))


@pytest.fixture(scope="module")
def splits():
    return make_data(128, seed=0), make_data(64, seed=1), make_data(64, seed=2)


@pytest.fixture(scope="module")
def recipe_run(trained_teacher, splits):
    (x, y), validation, test = splits
    student = make_mlp(8, "student", seed=2)
    initial = [w.copy() for w in student.get_weights()]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        best, report = distill(
            trained_teacher,
            student,
            x,
            y,
            validation_data=validation,
            test_data=test,
            views="image",
            image_shape=(2, 4),  # The 8 features read as a 2x4 image.
            views_per_example=2,
            candidates=((0.5, 1.0), (0.9, 2.0)),
            search_epochs=2,
            **FAST,
        )
    assert out.getvalue() == ""  # verbose=0 is silent.
    return student, initial, best, report


def useless_teacher():
    """A teacher that puts every input in class 0 with full confidence: KD cannot help."""
    model = make_mlp(4, "useless_teacher", seed=5)
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([np.zeros_like(kernel), np.array([20.0, 0.0, 0.0], "float32")])
    return model


def test_returns_a_plain_copy_of_the_student(recipe_run):
    student, initial, best, _ = recipe_run
    assert isinstance(best, keras.Model) and not isinstance(best, keras_distill.Distiller)
    assert best is not student
    assert [layer.name for layer in best.layers] == [layer.name for layer in student.layers]
    assert best.count_params() == student.count_params()
    assert not any("teacher" in weight.name for weight in best.weights)
    for before, after in zip(initial, student.get_weights()):
        np.testing.assert_array_equal(before, after)  # The caller's student is untouched.


def test_never_worse_than_the_baseline_or_plain_kd_on_validation(recipe_run, splits):
    _, _, _, report = recipe_run
    _, (x_val, y_val), (x_test, y_test) = splits
    chosen = report.chosen_model
    kept = report[report.kept]
    alone = report["student alone"]
    plain = report["plain KD a=0.5 T=4"]
    assert numpy_accuracy(chosen, x_val, y_val) == pytest.approx(kept["validation_accuracy"])
    assert numpy_accuracy(chosen, x_test, y_test) == pytest.approx(kept["test_accuracy"])
    assert kept["validation_accuracy"] >= alone["validation_accuracy"]
    assert kept["validation_accuracy"] >= plain["validation_accuracy"]
    assert numpy_accuracy(report.baseline_model, x_val, y_val) == pytest.approx(
        alone["validation_accuracy"]
    )
    best_distilled = max(plain["validation_accuracy"], report.runs[-1]["validation_accuracy"])
    assert report.distilled == (best_distilled > alone["validation_accuracy"])


def test_the_kept_run_is_refit_on_every_labelled_example(recipe_run, splits):
    _, _, best, report = recipe_run
    (x, _), (x_val, _), (x_test, y_test) = splits
    kept = report[report.kept]
    refit = report.refit
    assert refit["run"] == report.kept
    assert refit["num_examples"] == len(x) + len(x_val) == 192
    assert refit["epochs"] == kept["best_epoch"]
    # Generated runs rebuild the transfer set from all 192 labelled inputs (2 views each).
    expected = 192 * 3 if kept["stage"] in ("search", "final") else 192
    assert refit["num_transfer"] == expected
    assert numpy_accuracy(best, x_test, y_test) == pytest.approx(refit["test_accuracy"])
    trained = sum(run["epochs"] for run in report.runs)
    assert report.settings["total_epochs"] == trained + refit["epochs"]
    # The documented bound: alone and plain KD up to E each, the search 2 * S + E - S, refit E.
    epochs, search = FAST["epochs"], 2
    assert report.settings["total_epochs"] <= 2 * epochs + 2 * search + epochs - search + epochs
    assert report.settings["seconds"] > 0
    assert (
        f"Refit: {report.kept} trained again on all 192 labelled examples ({expected} inputs) "
        f"for {refit['epochs']} epochs" in str(report)
    )
    assert f"{report.settings['total_epochs']} epochs in all" in str(report)


def test_report_contents(recipe_run, trained_teacher, splits):
    _, _, _, report = recipe_run
    _, (x_val, y_val), (x_test, y_test) = splits
    assert [run["stage"] for run in report.runs] == ["baseline", "plain", "search", "final"]
    assert {run["name"] for run in report.runs} == {
        "student alone",
        "plain KD a=0.5 T=4",
        "distilled a=0.5 T=1",
        "distilled a=0.9 T=2",
    }
    assert (report.runs[1]["alpha"], report.runs[1]["temperature"]) == (0.5, 4.0)
    for run in report.runs:
        assert 1 <= run["best_epoch"] <= run["epochs"] <= FAST["epochs"]
        assert len(run["curve"]) == run["epochs"]
        # The best epoch's weights were restored: its accuracy is the curve's maximum.
        assert run["validation_accuracy"] == pytest.approx(max(run["curve"]))
        assert run["curve"][run["best_epoch"] - 1] == max(run["curve"])
    assert report.runs[2]["epochs"] <= 2  # The candidate that lost the search stopped there.
    assert report.teacher["validation_accuracy"] == pytest.approx(
        numpy_accuracy(trained_teacher, x_val, y_val)
    )
    assert report.teacher["test_accuracy"] == pytest.approx(
        numpy_accuracy(trained_teacher, x_test, y_test)
    )
    settings = report.settings
    assert (settings["num_fit"], settings["num_validation"], settings["num_test"]) == (128, 64, 64)
    assert settings["num_transfer"] == 128 * 3
    assert "256 generated image views (2 per labelled input)" in settings["transfer_description"]
    assert settings["candidates"] == [[0.5, 1.0], [0.9, 2.0]]
    assert settings["image_shape"] == [2, 4, 1] and settings["refit"] is True
    text = str(report)
    assert text.splitlines()[0] == (
        "| run | alpha | T | epochs (best) | validation accuracy | test accuracy |"
    )
    assert f"Kept: {report.kept}. {report.reason}" in text
    assert f"**{report.kept} (kept)**" in text
    data = json.loads(report.to_json())
    assert data == report.to_dict()
    assert set(data) == {"kept", "reason", "teacher", "runs", "settings", "refit"}
    again = RecipeReport.from_json(report.to_json())
    assert again.to_dict() == report.to_dict() and str(again) == text


def test_files_are_written(recipe_run, tmp_path):
    _, _, _, report = recipe_run
    path = report.save_json(tmp_path / "out" / "recipe.json")
    assert json.loads(open(path).read())["kept"] == report.kept
    png = report.plot_validation(tmp_path / "curves.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_useless_teacher_returns_the_student_alone_refit_on_all_labels(trained_teacher, capsys):
    # A validation split of one-hot labels, and unlabeled inputs read from a dataset.
    x, y = make_data(100, seed=4)
    one_hot = np.eye(NUM_CLASSES, dtype="float32")[y]
    unlabeled = tf.data.Dataset.from_tensor_slices(make_data(60, seed=3)[0]).batch(16)
    student = make_mlp(8, "student", seed=2)
    best, report = distill(
        useless_teacher(),
        student,
        x,
        one_hot,
        unlabeled=unlabeled,
        **dict(FAST, verbose=1, candidates=((0.9, 2.0),)),
    )
    assert (report.settings["num_fit"], report.settings["num_validation"]) == (80, 20)
    assert report.settings["num_transfer"] == 80 + 60
    assert "60 unlabeled inputs" in str(report)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("distill: 80 labelled examples to train on, 20 to validate")
    assert [line[:5] for line in out[1:8]] == [f"[{i}/7]" for i in range(1, 8)]
    assert out[7].startswith("[7/7] refit: student alone trained again on all 100 labelled")
    assert out[8].startswith(f"kept: {report.kept}.") and len(out) == 9

    assert report.kept == "student alone" and not report.distilled
    assert report.reason.startswith("Distillation did not help here")
    assert "so the student alone is returned" in report.reason
    (x_fit, y_fit), (x_val, y_val) = inputs.split(x, y, 0.2, seed=0)
    alone = report["student alone"]["validation_accuracy"]
    chosen = report.chosen_model
    assert numpy_accuracy(chosen, x_val, y_val) == pytest.approx(alone)
    for mine, baseline in zip(chosen.get_weights(), report.baseline_model.get_weights()):
        np.testing.assert_array_equal(mine, baseline)
    assert report.runs[-1]["validation_accuracy"] <= alone
    train = report["student alone"]["train_accuracy"]
    assert train == pytest.approx(numpy_accuracy(chosen, x_fit, y_fit))
    assert ("it may underfit" in report.reason) == (train - alone < 0.02)
    assert report.teacher["test_accuracy"] is None and "test accuracy" not in str(report)

    # The refit is plain Keras training on all 100 labelled examples, in their given order,
    # for the student alone's best epoch count: the same run written out here gives the
    # same weights.
    epochs = report["student alone"]["best_epoch"]
    assert report.refit == {
        "run": "student alone",
        "num_examples": 100,
        "num_transfer": 100,
        "epochs": epochs,
        "test_accuracy": None,
    }
    again = keras.models.clone_model(student)
    again.set_weights(student.get_weights())
    again.compile(
        optimizer=keras.optimizers.Adam(FAST["learning_rate"]),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    keras.utils.set_random_seed(0)
    again.fit(x, y, batch_size=FAST["batch_size"], epochs=epochs, shuffle=True, verbose=0)
    for mine, reference in zip(best.get_weights(), again.get_weights()):
        np.testing.assert_allclose(mine, reference, atol=1e-6)


def test_datasets_are_read_into_the_same_arrays():
    x, y = make_data(50, seed=0)
    batches = tf.data.Dataset.from_tensor_slices
    from_data = inputs.labelled_arrays("x", batches((x, y)).batch(16))
    from_arrays = inputs.labelled_arrays("x", x, y)
    for a, b in zip(from_data, from_arrays):
        np.testing.assert_array_equal(a, b)
    pair = inputs.pair("validation_data", batches((x, y)).batch(7))
    np.testing.assert_array_equal(pair[0], x)
    np.testing.assert_array_equal(inputs.input_array("unlabeled", batches(x).batch(9)), x)


def test_views_per_example():
    assert inputs.views_per_example(3, 10) == 3
    assert inputs.views_per_example("auto", 718) == 32  # ceil(25000 / 718) = 35, at most 32
    assert inputs.views_per_example("auto", 3200) == 8
    assert inputs.views_per_example("auto", 100_000) == 4


def test_generated_views():
    x, _ = make_data(50, seed=0)
    views = inputs.generated_views(x, "mixup", copies=3, seed=0)
    assert views.shape == (150, x.shape[1]) and views.dtype == np.float32
    # A mixup view is a convex combination of two inputs: inside their per-feature range.
    assert np.all(views >= x.min(0) - 1e-6) and np.all(views <= x.max(0) + 1e-6)
    np.testing.assert_array_equal(views, inputs.generated_views(x, "mixup", 3, seed=0))
    signals = np.random.default_rng(0).normal(size=(6, 20, 1)).astype("float32")
    assert inputs.view_kind("auto", signals) == "signal"
    assert inputs.view_kind("auto", x) == "munge"
    assert inputs.view_kind("auto", x[:, :, None, None]) == "munge"  # An 8x1 image is small.
    assert inputs.view_kind("auto", np.zeros((2, 16, 20, 3))) == "image"
    assert inputs.view_kind("auto", np.zeros((2, 8, 8, 1))) == "munge"
    assert inputs.view_kind("auto", np.zeros((2, 400)), image_shape=(20, 20, 1)) == "image"
    assert inputs.view_kind("auto", x, image_shape=(2, 4, 1)) == "munge"
    assert inputs.view_kind("mixup", x) == "mixup"
    munge = inputs.generated_views(signals, "munge", 3, seed=1)
    assert munge.shape == (18, 20, 1) and munge.dtype == np.float32
    assert inputs.generated_views(signals, "signal", 2, seed=0).shape == (12, 20, 1)
    images = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    assert inputs.generated_views(images, "image", 2, seed=0).shape == (8, 8, 8, 1)
    flat = inputs.generated_views(images.reshape(4, 64), "image", 2, 0, image_shape=(8, 8))
    np.testing.assert_allclose(
        flat.reshape(8, 8, 8, 1), inputs.generated_views(images, "image", 2, 0)
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "`epochs` must be an integer >= 1. Received: epochs=0"),
        (
            {"views_per_example": "many"},
            '`views_per_example` must be an integer >= 1 or "auto". '
            "Received: views_per_example='many'",
        ),
        ({"patience": 1.5}, "`patience` must be an integer >= 1. Received: patience=1.5"),
        (
            {"search_epochs": 9, "epochs": 4},
            "`search_epochs` must not exceed `epochs` (4). Received: search_epochs=9",
        ),
        (
            {"validation_split": 1.5},
            "`validation_split` must be a number in (0, 1). Received: validation_split=1.5",
        ),
        (
            {"validation_split": 0.2, "validation_data": "given"},
            "Received: validation_split=0.2 with validation_data",
        ),
        ({"candidates": [(2.0, 1.0)]}, "Received: candidates=[(2.0, 1.0)]"),
        ({"candidates": []}, "Received: candidates=[]"),
        (
            {"views": "bogus"},
            "`views` must be one of ['auto', 'munge', 'mixup', 'signal', 'image']. "
            "Received: views='bogus'",
        ),
        ({"verbose": 3}, "`verbose` must be one of [0, 1, 2]. Received: verbose=3"),
        ({"learning_rate": -1}, "Received: learning_rate=-1"),
        ({"seed": -1}, "`seed` must be an integer >= 0. Received: seed=-1"),
        (
            {"teacher_from_logits": "softmax"},
            "`teacher_from_logits` must be True (the teacher returns logits) or False "
            "(probabilities). Received: teacher_from_logits='softmax'",
        ),
        ({"y": np.zeros(5)}, "Received: 128 inputs and 5 labels"),
        ({"y": np.full(128, 7)}, "`y` must be class indices in [0, 2]. Received: labels up to 7"),
        ({"y": None}, "`x` needs labels"),
        (
            {"unlabeled": np.zeros((4, 3))},
            "`unlabeled` must have the example shape of `x` (8,). Received: unlabeled inputs of "
            "shape (4, 3)",
        ),
        ({"validation_data": (np.zeros((4, 8)),)}, "`validation_data` must be a tuple (x, y)"),
        ({"test_data": (np.full((4, 8), np.nan), np.zeros(4))}, "`test_data` contains NaN"),
        ({"teacher": "teacher.keras"}, "Received: teacher=builtins.str"),
        (
            {"image_shape": (3, 3)},
            "`image_shape` must be (height, width) or (height, width, channels) of integers >= 1 "
            "whose product is the number of values in one example (8, from examples of shape "
            "(8,)). Received: image_shape=(3, 3)",
        ),
        ({"image_shape": 8}, "Received: image_shape=8"),
        ({"views": "image"}, "Received: image_shape=None for examples of shape (8,)"),
        ({"refit": "yes"}, "`refit` must be True or False. Received: refit='yes'"),
    ],
)
def test_errors_name_the_argument(trained_teacher, kwargs, message):
    x, y = make_data(128)
    arguments = {
        "teacher": trained_teacher,
        "student": make_mlp(8, "student", seed=2),
        "x": x,
        "y": y,
        **kwargs,
    }
    with pytest.raises(ValueError) as info:
        distill(**arguments)
    assert message in str(info.value)


def test_the_same_model_as_teacher_and_student_is_refused(trained_teacher):
    x, y = make_data(16)
    with pytest.raises(ValueError, match="`student` and `teacher` must be different models"):
        distill(trained_teacher, trained_teacher, x, y)


@pytest.mark.parametrize(
    "alone, plain, searched, kept, says",
    [
        ((0.90, 0.70), 0.60, 0.75, "distilled a=0.5 T=1", "5.00 points above the student alone"),
        ((0.90, 0.70), 0.75, 0.75, "plain KD a=0.5 T=4", "5.00 points above the student alone"),
        ((0.90, 0.70), 0.72, 0.70, "plain KD a=0.5 T=4", "2.00 points above the student alone"),
        ((0.90, 0.70), 0.70, 0.70, "student alone", "Distillation did not help here"),
        ((0.71, 0.70), 0.50, 0.60, "student alone", "it may underfit"),
    ],
)
def test_choice_of_the_student(alone, plain, searched, kept, says):
    baseline = {
        "name": "student alone",
        "train_accuracy": alone[0],
        "validation_accuracy": alone[1],
    }
    distilled = [
        {"name": "plain KD a=0.5 T=4", "validation_accuracy": plain},
        {"name": "distilled a=0.5 T=1", "validation_accuracy": searched},
    ]
    name, reason = pipeline.choose_student(baseline, distilled)
    assert name == kept and says in reason
    assert ("underfit" in reason) == (says == "it may underfit")


@pytest.mark.parametrize(
    "tie_break,best_epoch,stopped_after",
    [("earlier", 2, 4), ("later", 3, 5)],
)
def test_best_on_validation_tie_break(monkeypatch, tie_break, best_epoch, stopped_after):
    from keras_distill.recipe import stopping

    scores = iter([0.5, 0.7, 0.7, 0.6, 0.6, 0.6])
    monkeypatch.setattr(stopping, "accuracy", lambda model, x, y: next(scores))
    student = make_mlp(4, "tie")
    stopper = stopping.BestOnValidation(student, None, None, patience=2, tie_break=tie_break)
    stopper.set_model(student)
    student.stop_training = False
    epochs = 0
    while not student.stop_training:
        stopper.on_epoch_end(epochs)
        epochs += 1
    assert (stopper.best, stopper.best_epoch, epochs) == (0.7, best_epoch, stopped_after)
    with pytest.raises(ValueError, match=r"`tie_break` must be one of \['earlier', 'later'\]"):
        stopping.BestOnValidation(student, None, None, patience=2, tie_break="last")
