"""Distil, prune, quantization-aware train and export an int8 .tflite, on MNIST-1D (offline).

One call to `keras_distill.compress` runs the chain and reports each stage:
accuracy, parameters, sparsity, .tflite and gzip sizes, LiteRT latency and
agreement with the teacher. It writes the files, `chain_report.json` and
`chain_report.png` to `--out`.

The chain runs on both generations: on Keras 3 (the default) pruning and
QAT are keras_distill's own, on tf_keras they are tensorflow-model-optimization's:

    python examples/compress_to_tflite.py [--out outputs/compress]
    TF_USE_LEGACY_KERAS=1 python examples/compress_to_tflite.py [--out outputs/compress]
"""

import argparse

from keras_distill import compress
from keras_distill._keras import keras
from keras_distill.data import datasets

NUM_CLASSES = 10


def cnn_teacher(length):
    inputs = keras.Input((length,), name="signal")
    x = keras.layers.Reshape((length, 1))(inputs)
    for filters in (32, 32, 32):
        x = keras.layers.Conv1D(filters, 5, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(x), name="cnn_teacher")


def mlp_student(length, width):
    inputs = keras.Input((length,), name="signal")
    x = keras.layers.Dense(width, activation="relu")(inputs)
    x = keras.layers.Dense(width, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(x), name="mlp_student")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--distill-epochs", type=int, default=30)
    parser.add_argument("--prune-epochs", type=int, default=10)
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--out", default="outputs/compress")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = datasets.mnist1d(num_samples=args.samples)
    teacher = cnn_teacher(x_train.shape[1])
    teacher.compile(
        keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    teacher.fit(x_train, y_train, epochs=args.teacher_epochs, batch_size=64, verbose=0)

    report = compress(
        mlp_student(x_train.shape[1], args.width),
        x_train,
        y_train,
        x_test,
        y_test,
        teacher=teacher,
        output_dir=args.out,
        distill_epochs=args.distill_epochs,
        prune_epochs=args.prune_epochs,
        qat_epochs=args.qat_epochs,
        target_sparsity=args.sparsity,
        batch_size=64,
    )
    print(report)
    print(report.export_report)
    print(f"Files, chain_report.json and chain_report.png are in {args.out}")
    return report


if __name__ == "__main__":
    main()
