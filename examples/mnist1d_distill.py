"""Distil a CNN teacher into a small MLP student on MNIST-1D with `distill()` (offline).

The labelled data is 3,200 signals to train on and 800 to validate; the
teacher also labels further generated signals (the unlabeled transfer set).
`keras_distill.distill` trains the student alone, distils copies of it for a
few `(alpha, T)` candidates, and keeps whichever is better on validation.
Prints the recipe's table, then a comparison on the 1,000 test signals, and
writes the kept student, `recipe.json`, `report.json`,
`validation_curves.png` and `accuracy_vs_size.png`.

    python examples/mnist1d_distill.py [--unlabeled 40000] [--epochs 60] [--out outputs/]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Before TensorFlow is imported.

import numpy as np  # noqa: E402

from keras_distill import compare  # noqa: E402
from keras_distill import distill  # noqa: E402
from keras_distill import saving  # noqa: E402
from keras_distill._keras import keras  # noqa: E402
from keras_distill.data import datasets  # noqa: E402

NUM_CLASSES = 10


def cnn_teacher(length):
    inputs = keras.Input((length,), name="signal")
    x = keras.layers.Reshape((length, 1))(inputs)
    for filters, kernel in ((32, 5), (32, 5), (32, 3)):
        x = keras.layers.Conv1D(filters, kernel, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling1D(2)(x) if kernel == 5 else x
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, outputs, name="cnn_teacher")


def mlp_student(length):
    inputs = keras.Input((length,), name="signal")
    x = keras.layers.Dense(64, activation="relu")(inputs)
    x = keras.layers.Dense(64, activation="relu")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, outputs, name="mlp_student")


def train_teacher(x, y, epochs, seed):
    keras.utils.set_random_seed(seed)
    teacher = cnn_teacher(x.shape[1])
    teacher.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    teacher.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
    return teacher


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--unlabeled",
        type=int,
        default=40000,
        help="generated signals the teacher labels (the transfer set)",
    )
    parser.add_argument("--epochs", type=int, default=60, help="most epochs of any student")
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency-repeats", type=int, default=51)
    parser.add_argument("--out", default="outputs", help="folder for the student and the report")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    (x_train, y_train), (x_test, y_test) = datasets.mnist1d(num_samples=5000, seed=42)
    order = np.random.default_rng(0).permutation(len(y_train))
    fit, val = order[:3200], order[3200:]
    # More generated MNIST-1D signals, used without their labels: the "unlabeled" inputs.
    (unlabeled, _), _ = datasets.mnist1d(num_samples=args.unlabeled, train_split=1.0, seed=7)
    print(
        f"MNIST-1D: {len(fit):,} labelled signals to train on, {len(val):,} to validate, "
        f"{len(unlabeled):,} unlabeled, {len(y_test):,} to test",
        flush=True,
    )

    teacher = train_teacher(x_train[fit], y_train[fit], args.teacher_epochs, 1000 + args.seed)
    keras.utils.set_random_seed(args.seed)
    student, recipe = distill(
        teacher,
        mlp_student(x_train.shape[1]),
        x_train[fit],
        y_train[fit],
        validation_data=(x_train[val], y_train[val]),
        unlabeled=unlabeled,
        test_data=(x_test, y_test),
        epochs=args.epochs,
        patience=args.patience,
        candidates=((0.5, 1.0), (0.5, 2.0)),
        seed=args.seed,
    )
    print()
    print(recipe)

    others = {"student alone": recipe.baseline_model}
    report = compare(
        teacher,
        student,
        x_test,
        y_test,
        others=others,
        latency_repeats=args.latency_repeats,
        student_name="student (kept)",
    )
    print()
    print(report)

    os.makedirs(args.out, exist_ok=True)
    saving.save_model(student, os.path.join(args.out, "mnist1d_student.keras"))
    recipe.save_json(os.path.join(args.out, "recipe.json"))
    report.save_json(os.path.join(args.out, "report.json"))
    recipe.plot_validation(os.path.join(args.out, "validation_curves.png"))
    report.plot_accuracy_vs_size(os.path.join(args.out, "accuracy_vs_size.png"))
    print(
        f"\nWrote mnist1d_student.keras, recipe.json, report.json, validation_curves.png and "
        f"accuracy_vs_size.png to {os.path.abspath(args.out)}/ "
        f"({time.perf_counter() - started:.0f} s)"
    )
    return {
        "teacher": report["teacher"]["accuracy"],
        "student alone": report["student alone"]["accuracy"],
        "student (kept)": report["student (kept)"]["accuracy"],
        "kept": recipe.kept,
    }


if __name__ == "__main__":
    main()
