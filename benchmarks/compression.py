"""Compression benchmark on MNIST-1D: int8, 80% sparsity, and both, as .tflite files.

Trains a Conv1D teacher and distils an MLP student, then measures (LiteRT
runs every file on the 1,000 test examples):
- dense float32 .tflite (the reference),
- dense int8 .tflite (post-training full-integer quantization),
- 80% sparse float32 .tflite (distillation-aware pruning),
- 80% sparse int8 .tflite (post-training, and after distillation-aware QAT),
with raw and gzip sizes and the top-1 drop against the dense float32 file.
The results are written to docs/compression.md.

Needs the legacy generation (pruning and QAT use tensorflow-model-optimization):

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/compression.py
"""

import argparse
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import keras_distill  # noqa: E402
from keras_distill import datasets  # noqa: E402
from keras_distill.backend import GENERATION  # noqa: E402
from keras_distill.backend import KERAS_VERSION  # noqa: E402
from keras_distill.backend import keras  # noqa: E402

COMMAND = "TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/compression.py"


def build_teacher():
    inputs = keras.Input((40,))
    hidden = keras.layers.Reshape((40, 1))(inputs)
    for filters in (32, 32, 32):
        hidden = keras.layers.Conv1D(filters, 3, padding="same", activation="relu")(hidden)
    hidden = keras.layers.Flatten()(hidden)
    return keras.Model(inputs, keras.layers.Dense(10)(hidden), name="teacher")


def build_student(width):
    inputs = keras.Input((40,))
    hidden = keras.layers.Dense(width, activation="relu", name="hidden1")(inputs)
    hidden = keras.layers.Dense(width, activation="relu", name="hidden2")(hidden)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(hidden), name="student")


def accuracy(path, x, y):
    return float(np.mean(keras_distill.run_tflite(path, x).argmax(1) == y))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--distill-epochs", type=int, default=40)
    parser.add_argument("--prune-epochs", type=int, default=12)
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--output", default="docs/compression.md")
    args = parser.parse_args()
    if GENERATION != "tf_keras":
        sys.exit("Run with TF_USE_LEGACY_KERAS=1: pruning and QAT need tf_keras.")
    start = time.time()
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = datasets.mnist1d(num_samples=5000)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    teacher = build_teacher()
    teacher.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    teacher.fit(x_train, y_train, epochs=args.teacher_epochs, batch_size=64, verbose=0)
    teacher_accuracy = teacher.evaluate(x_test, y_test, verbose=0)[1]
    print(f"teacher test accuracy {teacher_accuracy:.4f} ({time.time() - start:.0f} s)")

    student = build_student(args.width)
    distiller = keras_distill.Distiller(student=student, teacher=teacher)
    distiller.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"], alpha=0.5, temperature=4.0)
    distiller.fit(x_train, y_train, epochs=args.distill_epochs, batch_size=64, verbose=0)
    print(f"student distilled ({time.time() - start:.0f} s)")

    sparse = keras_distill.prune(student, x_train, y_train, teacher=teacher,
                                 target_sparsity=args.sparsity, epochs=args.prune_epochs,
                                 batch_size=64, optimizer=keras.optimizers.Adam(5e-4))
    print(f"pruned ({time.time() - start:.0f} s)")
    qat = keras_distill.quantization_aware_training(
        sparse, x_train, y_train, teacher=teacher, epochs=args.qat_epochs, batch_size=64,
        optimizer=keras.optimizers.Adam(1e-4))
    print(f"quantization-aware trained ({time.time() - start:.0f} s)")

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        def export(name, model, **kwargs):
            path = os.path.join(folder, f"{name}.tflite")
            report = keras_distill.export_tflite(model, path, sample_inputs=x_test, **kwargs)
            rows.append({
                "name": name,
                "bytes": report.file_size_bytes,
                "gzip": keras_distill.gzip_size(path),
                "accuracy": accuracy(path, x_test, y_test),
                "sparsity": keras_distill.weight_sparsity(model)["total"],
                "parity": report.top1_agreement,
            })

        calibration = x_train[:500]
        export("dense float32", student)
        export("dense int8 (post-training)", student, quantization="int8",
               representative_data=calibration)
        export("80% sparse float32", sparse)
        export("80% sparse int8 (post-training)", sparse, quantization="int8",
               representative_data=calibration)
        export("80% sparse int8 (QAT)", qat, quantization="int8")
    elapsed = time.time() - start
    args.num_test = len(x_test)
    write_markdown(args, rows, teacher_accuracy, elapsed)
    print(open(args.output).read())


def write_markdown(args, rows, teacher_accuracy, elapsed):
    base = rows[0]
    lines = [
        "# Compression benchmark (MNIST-1D)",
        "",
        "Recorded by `benchmarks/compression.py`. Reproduce with:",
        "",
        f"    {COMMAND}",
        "",
        f"Setup: MNIST-1D generated offline (`datasets.mnist1d()`, 4,000 train / 1,000 test). "
        f"Teacher: three Conv1D(32) layers + Dense, {args.teacher_epochs} epochs, test accuracy "
        f"{teacher_accuracy:.4f}. Student: MLP 40-{args.width}-{args.width}-10 "
        f"({build_student(args.width).count_params():,} parameters), distilled for "
        f"{args.distill_epochs} epochs (alpha 0.5, T 4); pruned to {args.sparsity:.0%} with the "
        f"Distiller for {args.prune_epochs} epochs; sparsity-preserving QAT with the Distiller "
        f"for {args.qat_epochs} epochs. Every accuracy is of the `.tflite` file run by LiteRT "
        f"on the 1,000 test examples. Sizes are bytes; gzip at level 9. "
        f"{GENERATION} {KERAS_VERSION}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPU cores, {elapsed:.0f} s in all.",
        "",
        "| file | size | x float32 | gzip | x float32 gzip | sparsity | top-1 | drop (points) | parity with Keras |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        drop = 100 * (base["accuracy"] - row["accuracy"])
        lines.append(
            f"| {row['name']} | {row['bytes']:,} | {row['bytes'] / base['bytes']:.3f} | "
            f"{row['gzip']:,} | {row['gzip'] / base['gzip']:.3f} | {row['sparsity']:.3f} | "
            f"{row['accuracy']:.4f} | {drop:+.1f} | {row['parity']:.4f} |"
        )
    by_name = {row["name"]: row for row in rows}

    def check(label, ratio_name, ratio_key, limit, drop_name):
        ratio = by_name[ratio_name][ratio_key] / base[ratio_key]
        drop = 100 * (base["accuracy"] - by_name[drop_name]["accuracy"])
        verdict = "met" if ratio <= limit and drop <= 1.0 else "NOT met"
        return (f"| {label} | {ratio:.3f} (target <= {limit:.3f}) | {drop:+.1f} "
                f"(target <= 1.0) | {verdict} |")

    lines += [
        "",
        "Targets (the tensorflow-model-optimization guide reports 3x and 10x on MNIST):",
        "",
        "| target | size ratio | top-1 drop (points) | result |",
        "|---|---|---|---|",
        check("int8 .tflite vs float32 .tflite", "dense int8 (post-training)", "bytes", 0.30,
              "dense int8 (post-training)"),
        check("80% sparse, gzip vs dense gzip", "80% sparse float32", "gzip", 1 / 3,
              "80% sparse float32"),
        check("80% sparse + int8 (QAT), gzip vs dense gzip", "80% sparse int8 (QAT)", "gzip",
              0.10, "80% sparse int8 (QAT)"),
        "",
        "`drop` is the dense float32 file's top-1 minus this file's, in percentage points "
        "(negative: this file is more accurate). `parity with Keras` is the top-1 agreement of "
        "the file with the Keras model it was exported from.",
        "",
        f"One seed and {args.num_test} test examples: the standard error of one accuracy is "
        f"{100 * (base['accuracy'] * (1 - base['accuracy']) / args.num_test) ** 0.5:.1f} points, "
        "so drops of about a point are within noise. The int8 file is not exactly 1/4 of the "
        "float32 one: biases stay int32, and per-channel scales, zero points and the graph "
        "add a fixed overhead.",
        "",
    ]
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))


if __name__ == "__main__":
    main()
