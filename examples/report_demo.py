"""Teacher -> distilled student -> report and plots, on generated MNIST-1D.

Offline, minutes on a CPU.

Trains a CNN teacher, an MLP student alone, and the same MLP distilled with
a teacher-labelled transfer set (extra generated signals without labels),
then compares the three with `keras_distill.compare` and writes
`report.json`, `history.png` and `accuracy_vs_size.png`.

    python examples/report_demo.py [--epochs 30] [--out outputs/report_demo]
"""

import argparse
import os

from keras_distill import Distiller
from keras_distill import compare
from keras_distill._keras import keras
from keras_distill.data import datasets
from keras_distill.data import transfer

NUM_CLASSES = 10


def cnn_teacher():
    inputs = keras.Input((40,))
    x = keras.layers.Reshape((40, 1))(inputs)
    x = keras.layers.Conv1D(32, 5, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.Conv1D(32, 5, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.Conv1D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(x), name="cnn_teacher")


def mlp_student():
    inputs = keras.Input((40,))
    x = keras.layers.Dense(64, activation="relu")(inputs)
    x = keras.layers.Dense(64, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(x), name="mlp_student")


def train_alone(model, x, y, epochs):
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("outputs", "report_demo"))
    args = parser.parse_args(argv)

    (x, y), (x_test, y_test) = datasets.mnist1d(num_samples=5000)
    (unlabeled, _), _ = datasets.mnist1d(num_samples=4000, train_split=1.0, seed=7)

    keras.utils.set_random_seed(args.seed)
    teacher = train_alone(cnn_teacher(), x, y, args.epochs)
    keras.utils.set_random_seed(args.seed)
    alone = train_alone(mlp_student(), x, y, args.epochs)

    keras.utils.set_random_seed(args.seed)
    student = mlp_student()
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        weighted_metrics=["accuracy"],
        alpha=0.5,
        temperature=2.0,
    )
    x_all, y_all = transfer.transfer_set(x, y, unlabeled)  # unlabeled rows get label -1
    history = distiller.fit(
        x_all,
        y_all,
        epochs=args.epochs,
        batch_size=128,
        shuffle=True,
        validation_data=(x_test, y_test),
        verbose=0,
    )

    report = compare(
        teacher, student, x_test, y_test, others={"student alone": alone}, history=history
    )
    print(report)
    print("wrote", report.save_json(os.path.join(args.out, "report.json")))
    print("wrote", report.plot_history(os.path.join(args.out, "history.png")))
    print("wrote", report.plot_accuracy_vs_size(os.path.join(args.out, "accuracy_vs_size.png")))
    return report


if __name__ == "__main__":
    main()
