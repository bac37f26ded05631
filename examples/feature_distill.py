"""Feature distillation on MNIST-1D: a CNN teacher into a thinner CNN student.

Compares the student trained alone, with logits KD, and with logits KD plus
one feature match: FitNets hint, attention transfer (AT) or relational KD
(RKD distance + angle). Offline; a few minutes on 2 CPU cores.

    python examples/feature_distill.py [--epochs 20]
"""

import argparse

import numpy as np

from keras_distill import Distiller
from keras_distill import FeatureMatch
from keras_distill._keras import keras
from keras_distill.data import datasets

NUM_CLASSES = 10


def cnn(prefix, filters, length):
    inputs = keras.Input((length,))
    x = keras.layers.Reshape((length, 1))(inputs)
    for block, width in enumerate(filters, start=1):
        x = keras.layers.Conv1D(
            width, 5, padding="same", activation="relu", name=f"{prefix}_block{block}"
        )(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(
        inputs, keras.layers.Dense(NUM_CLASSES, name=f"{prefix}_logits")(x), name=prefix
    )


def recipes():
    """Name -> feature matches (student block2 <- teacher block3)."""
    return {
        "logits KD": [],
        "+ FitNets hint": [FeatureMatch("s_block2", "t_block3", loss="hint", weight=1.0)],
        "+ attention transfer": [FeatureMatch("s_block2", "t_block3", loss="at")],
        "+ RKD (distance, angle)": [
            FeatureMatch("s_block2", "t_block3", loss="rkd_distance"),
            FeatureMatch("s_block2", "t_block3", loss="rkd_angle"),
        ],
    }


def accuracy(model, x, y):
    return float(np.mean(np.asarray(model(x, training=False)).argmax(-1) == y))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    (x_train, y_train), (x_test, y_test) = datasets.mnist1d()
    length = x_train.shape[1]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    keras.utils.set_random_seed(args.seed)
    teacher = cnn("t", (32, 32, 32), length)
    teacher.compile(optimizer="adam", loss=loss)
    teacher.fit(x_train, y_train, epochs=args.epochs, batch_size=64, verbose=0)
    results = {"teacher": accuracy(teacher, x_test, y_test)}

    keras.utils.set_random_seed(args.seed)
    alone = cnn("s", (8, 8), length)
    alone.compile(optimizer="adam", loss=loss)
    alone.fit(x_train, y_train, epochs=args.epochs, batch_size=64, verbose=0)
    results["student alone"] = accuracy(alone, x_test, y_test)

    for name, matches in recipes().items():
        keras.utils.set_random_seed(args.seed)
        student = cnn("s", (8, 8), length)
        distiller = Distiller(student=student, teacher=teacher, feature_matches=matches)
        distiller.compile(optimizer="adam", alpha=0.5, temperature=4.0)
        history = distiller.fit(x_train, y_train, epochs=args.epochs, batch_size=64, verbose=0)
        results[name] = accuracy(student, x_test, y_test)
        logged = ", ".join(f"{k}={v[-1]:.3g}" for k, v in history.history.items())
        print(f"{name}: last epoch {logged}")

    print(f"\nMNIST-1D test accuracy ({args.epochs} epochs, alpha=0.5, T=4)")
    print("| model | test accuracy |\n|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value:.3f} |")
    return results


if __name__ == "__main__":
    main()
