"""Distil a CNN teacher into a small MLP student on MNIST-1D (generated offline).

Prints the test accuracy of the teacher, of the student trained alone, and of
the same student distilled from the teacher, saves the distilled student, and
writes a comparison report (`report.json`, `history.png`,
`accuracy_vs_size.png`) next to it.

    python examples/mnist1d_distill.py [--epochs 30] [--out outputs/]
"""

import argparse
import os
import time

import numpy as np

from keras_distill import Distiller
from keras_distill import compare
from keras_distill.data import datasets
from keras_distill._keras import keras

NUM_CLASSES = 10


def cnn_teacher(length):
    inputs = keras.Input((length,), name="signal")
    x = keras.layers.Reshape((length, 1))(inputs)
    for filters in (32, 32, 32):
        x = keras.layers.Conv1D(filters, 5, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, outputs, name="cnn_teacher")


def mlp_student(length):
    inputs = keras.Input((length,), name="signal")
    x = keras.layers.Dense(100, activation="relu")(inputs)
    x = keras.layers.Dense(100, activation="relu")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, outputs, name="mlp_student")


def accuracy(model, x, y):
    return float(np.mean(np.asarray(model(x, training=False)).argmax(-1) == y))


def train_alone(model, x, y, epochs, batch_size):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="epochs for each model")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs", help="folder for the distilled student")
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = datasets.mnist1d()
    length = x_train.shape[1]
    started = time.perf_counter()

    keras.utils.set_random_seed(args.seed)
    teacher = train_alone(cnn_teacher(length), x_train, y_train, args.epochs, args.batch_size)

    keras.utils.set_random_seed(args.seed)
    alone = train_alone(mlp_student(length), x_train, y_train, args.epochs, args.batch_size)

    keras.utils.set_random_seed(args.seed)
    student = mlp_student(length)
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        metrics=["accuracy"],
        alpha=args.alpha,
        temperature=args.temperature,
    )
    history = distiller.fit(
        x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
        validation_data=(x_test, y_test), verbose=0,
    )

    results = {
        "teacher (CNN)": accuracy(teacher, x_test, y_test),
        "student alone (MLP)": accuracy(alone, x_test, y_test),
        "student distilled (MLP)": accuracy(student, x_test, y_test),
    }
    print(f"MNIST-1D, {len(y_train)} training / {len(y_test)} test examples, "
          f"alpha={args.alpha}, T={args.temperature}, {args.epochs} epochs")
    print(f"| {'model':<24} | params | test accuracy |")
    print(f"|{'-' * 26}|--------|---------------|")
    params = [teacher.count_params(), alone.count_params(), student.count_params()]
    for (name, value), count in zip(results.items(), params):
        print(f"| {name:<24} | {count:>6} | {value:>13.3f} |")
    last = {name: round(values[-1], 4) for name, values in history.history.items()}
    print(f"last distillation epoch: {last}")

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "mnist1d_student.keras")
    student.save(path)
    report = compare(teacher, student, x_test, y_test, others={"student alone": alone}, history=history)
    print(report)
    report.save_json(os.path.join(args.out, "report.json"))
    report.plot_history(os.path.join(args.out, "history.png"))
    report.plot_accuracy_vs_size(os.path.join(args.out, "accuracy_vs_size.png"))
    print(f"saved the distilled student, report.json, history.png and accuracy_vs_size.png "
          f"to {args.out}/ ({time.perf_counter() - started:.0f} s)")
    return results


if __name__ == "__main__":
    main()
