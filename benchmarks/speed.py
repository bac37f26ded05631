"""Speed of distillation: our Distiller against the practical limit and against peers.

Every row is measured in this one run, on the same models and batch, with
alternated repeats (one epoch of `--steps` steps each); tables give the
minimum and the median of `--repeats` epochs and the ratio of the minima
(timing on shared machines is bimodal; the minimum is the stable statistic).

    python benchmarks/speed.py [--repeats 7] [--steps 32] [--batch 128] [--torch]

Runs on Keras 3 (Keras's own `keras.distillation` needs it). The PyTorch row
needs `pip install torch==2.13.0` and `--torch`.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf
from resident_memory import peak_mib

from keras_distill import Distiller
from keras_distill import FeatureMatch
from keras_distill import TeacherCache
from keras_distill._keras import IS_LEGACY
from keras_distill._keras import keras

LENGTH, CLASSES = 40, 10
TEMPERATURE, ALPHA = 4.0, 0.5
LIMIT = "limit (teacher fwd + student step)"


def teacher_model():
    inputs = keras.Input((LENGTH, 1))
    x = keras.layers.Conv1D(64, 5, padding="same", activation="relu", name="t_block1")(inputs)
    x = keras.layers.Conv1D(64, 5, padding="same", activation="relu", name="t_block2")(x)
    x = keras.layers.Conv1D(16, 5, padding="same", activation="relu", name="t_block3")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="t_logits")(x), name="teacher")


def student_model():
    inputs = keras.Input((LENGTH, 1))
    x = keras.layers.Conv1D(16, 5, padding="same", activation="relu", name="s_block1")(inputs)
    x = keras.layers.Conv1D(16, 5, padding="same", activation="relu", name="s_block2")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="s_logits")(x), name="student")


def sparse_ce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class MinimalDistiller(keras.Model):
    """The practical limit: one teacher forward and one student train step, nothing else."""

    def __init__(self, student, teacher):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.loss_fn = sparse_ce()

    def call(self, x):
        return self.student(x)

    def train_step(self, data):
        x, y = data
        teacher_logits = self.teacher(x, training=False)
        with tf.GradientTape() as tape:
            logits = self.student(x, training=True)
            loss = self.loss_fn(y, logits) + 0.0 * tf.reduce_sum(teacher_logits)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {"loss": loss}


class KerasIoDistiller(keras.Model):
    """The keras.io knowledge-distillation example's Distiller (Keras 3 version)."""

    def __init__(self, student, teacher):
        super().__init__()
        self.teacher, self.student = teacher, student

    def compile(
        self, optimizer, metrics, student_loss_fn, distillation_loss_fn, alpha=0.1, temperature=3
    ):
        super().compile(optimizer=optimizer, metrics=metrics)
        self.student_loss_fn, self.distillation_loss_fn = student_loss_fn, distillation_loss_fn
        self.alpha, self.temperature = alpha, temperature

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, allow_empty=False):
        teacher_pred = self.teacher(x, training=False)
        student_loss = self.student_loss_fn(y, y_pred)
        distillation_loss = self.distillation_loss_fn(
            keras.ops.softmax(teacher_pred / self.temperature, axis=1),
            keras.ops.softmax(y_pred / self.temperature, axis=1),
        ) * (self.temperature**2)
        return self.alpha * student_loss + (1 - self.alpha) * distillation_loss

    def call(self, x):
        return self.student(x)


def make_data(args):
    rng = np.random.default_rng(0)
    n = args.steps * args.batch
    x = rng.normal(size=(n, LENGTH, 1)).astype("float32")
    y = rng.integers(0, CLASSES, size=n).astype("int32")
    return x, y


def candidates(args, x, y, teacher):
    """name -> (model factory returning a compiled model, dataset factory)."""

    def dataset():
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch)

    def fresh_student():
        keras.utils.set_random_seed(1)
        return student_model()

    def ours(jit_compile="auto", matches=None, teacher_or_cache=teacher, data_checks=True):
        def build():
            model = Distiller(
                student=fresh_student(), teacher=teacher_or_cache, feature_matches=matches
            )
            model.compile(
                optimizer="adam",
                alpha=ALPHA,
                temperature=TEMPERATURE,
                jit_compile=jit_compile,
                data_checks=data_checks,
            )
            return model

        return build

    def student_only():
        model = fresh_student()
        model.compile(optimizer="adam", loss=sparse_ce())
        return model

    def limit():
        model = MinimalDistiller(fresh_student(), teacher)
        model.compile(optimizer="adam")
        return model

    def keras_own(features=False):
        def build():
            from keras.distillation import Distiller as KerasDistiller
            from keras.distillation import FeatureDistillation
            from keras.distillation import LogitsDistillation

            losses = [LogitsDistillation(temperature=TEMPERATURE)]
            if features:
                losses.append(FeatureDistillation("mse", "t_block3", "s_block2"))
            model = KerasDistiller(
                teacher=teacher,
                student=fresh_student(),
                distillation_losses=losses,
                student_loss_weight=1 - ALPHA,
            )
            model.compile(optimizer="adam", loss=sparse_ce())
            return model

        return build

    def keras_io():
        model = KerasIoDistiller(fresh_student(), teacher)
        model.compile(
            optimizer="adam",
            metrics=[],
            student_loss_fn=sparse_ce(),
            distillation_loss_fn=keras.losses.KLDivergence(),
            alpha=1 - ALPHA,
            temperature=TEMPERATURE,
        )
        return model

    cache = TeacherCache.build(teacher, x)
    feature = [FeatureMatch("s_block2", "t_block3", loss="mse")]
    rows = {
        "student only": (student_only, dataset),
        LIMIT: (limit, dataset),
        "ours": (ours(), dataset),
        "ours, checks off": (ours(data_checks=False), dataset),
        "ours, cached teacher": (
            ours(teacher_or_cache=cache),
            lambda: cache.dataset(x, y, batch_size=args.batch, shuffle=False),
        ),
        "ours, XLA off": (ours(jit_compile=False), dataset),
        "ours, XLA on": (ours(jit_compile=True), dataset),
        "ours, XLA on, checks off": (ours(jit_compile=True, data_checks=False), dataset),
        "ours + feature match": (ours(matches=feature), dataset),
        "keras.io example": (keras_io, dataset),
    }
    if not IS_LEGACY and hasattr(keras, "distillation"):
        rows["keras.distillation"] = (keras_own(), dataset)
        rows["keras.distillation + feature"] = (keras_own(features=True), dataset)
    return rows


def time_alternated(models, repeats):
    """`{name: [ms per epoch]}`: one epoch of each warmed-up `(model, data)` in turn.

    Every model runs `repeats` epochs, alternated.
    """
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name, (model, data) in models.items():
            start = time.perf_counter()
            model.fit(data, epochs=1, verbose=0)
            times[name].append((time.perf_counter() - start) * 1000.0)
    return times


def warmed_up(model, data):
    model.fit(data, epochs=1, verbose=0)  # trace and warm up
    return model, data


def time_keras(rows, repeats):
    models = {name: warmed_up(build(), dataset()) for name, (build, dataset) in rows.items()}
    return time_alternated(models, repeats)


def time_mixed_precision(args, x, y, teacher, repeats):
    models = {}
    for policy in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(policy)
        keras.utils.set_random_seed(1)
        model = Distiller(student=student_model(), teacher=teacher)
        model.compile(optimizer="adam", alpha=ALPHA, temperature=TEMPERATURE)
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch)
        models[f"ours, {policy}"] = warmed_up(model, data)
    keras.mixed_precision.set_global_policy("float32")
    return time_alternated(models, repeats)


def time_torch(args, x, y, repeats):
    import torch
    from torch import nn

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)

    def cnn(widths):
        layers, channels = [], 1
        for width in widths:
            layers += [nn.Conv1d(channels, width, 5, padding=2), nn.ReLU()]
            channels = width
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * LENGTH, CLASSES))

    teacher, student = cnn((64, 64, 16)).eval(), cnn((16, 16))
    optimizer = torch.optim.Adam(student.parameters())
    inputs = torch.from_numpy(x.transpose(0, 2, 1).copy())
    labels = torch.from_numpy(y.astype("int64"))
    kl = nn.KLDivLoss(reduction="batchmean", log_target=True)

    def epoch():
        for start in range(0, len(labels), args.batch):
            batch, target = inputs[start : start + args.batch], labels[start : start + args.batch]
            with torch.no_grad():
                teacher_logits = teacher(batch)
            logits = student(batch)
            soft = kl(
                torch.log_softmax(logits / TEMPERATURE, -1),
                torch.log_softmax(teacher_logits / TEMPERATURE, -1),
            )
            loss = (1 - ALPHA) * nn.functional.cross_entropy(
                logits, target
            ) + ALPHA * TEMPERATURE**2 * soft
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    epoch()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        epoch()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def peak_memory_child(kind, steps, batch):
    """Runs in a subprocess: fits 3 epochs and prints the peak resident memory (MiB)."""
    args = argparse.Namespace(steps=steps, batch=batch)
    x, y = make_data(args)
    keras.utils.set_random_seed(0)
    teacher = teacher_model()
    if kind == "distill":
        model = Distiller(student=student_model(), teacher=teacher)
        model.compile(optimizer="adam", alpha=ALPHA, temperature=TEMPERATURE)
    else:
        model = student_model()
        model.compile(optimizer="adam", loss=sparse_ce())
    model.fit(x, y, batch_size=batch, epochs=3, verbose=0)
    print(peak_mib())


def peak_memory(args):
    result = {}
    for kind in ("student", "distill"):
        output = subprocess.run(
            [
                sys.executable,
                __file__,
                "--memory-child",
                kind,
                "--steps",
                str(args.steps),
                "--batch",
                str(args.batch),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        ).stdout
        result[kind] = float(output.strip().splitlines()[-1])
    return result


def summary(times):
    return min(times), statistics.median(times)


def ratio_row(label, ours, reference, times, target):
    ours_min, ours_median = summary(times[ours])
    ref_min, ref_median = summary(times[reference])
    ratio = ours_min / ref_min
    verdict = "" if target is None else ("yes" if ratio <= target else "no")
    target_text = "-" if target is None else f"<= {target:.2f}"
    return (
        f"| {label} | {ours_min:.0f} / {ours_median:.0f} | {ref_min:.0f} / {ref_median:.0f} "
        f"| {ratio:.2f} | {target_text} | {verdict} |"
    )


def print_check_rows(times):
    """Rows g and g': the in-step data checks on / off, in graph mode and under XLA."""
    print(ratio_row("g. in-step data checks on / off", "ours", "ours, checks off", times, None))
    xla = ("ours, XLA on", "ours, XLA on, checks off")
    print(ratio_row("g'. XLA: in-step data checks on / off", *xla, times, None))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--torch", action="store_true", help="add the PyTorch loop (needs torch)")
    parser.add_argument("--json", help="also write the raw times to this file")
    parser.add_argument(
        "--overhead-only",
        action="store_true",
        help="time only ours and the limit (row a), e.g. with more repeats",
    )
    parser.add_argument(
        "--checks-only",
        action="store_true",
        help="time only ours with and without the in-step data checks (row g)",
    )
    parser.add_argument("--memory-child", choices=["student", "distill"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        return peak_memory_child(args.memory_child, args.steps, args.batch)

    x, y = make_data(args)
    keras.utils.set_random_seed(0)
    teacher = teacher_model()
    rows = candidates(args, x, y, teacher)
    if args.overhead_only:
        times = time_keras({name: rows[name] for name in ("ours", LIMIT)}, args.repeats)
        print(ratio_row("a. overhead: ours / limit", "ours", LIMIT, times, 1.05))
        return
    if args.checks_only:
        names = ("ours", "ours, checks off", LIMIT, "ours, XLA on", "ours, XLA on, checks off")
        times = time_keras({name: rows[name] for name in names}, args.repeats)
        print_check_rows(times)
        print(ratio_row("a. overhead: ours / limit", "ours", LIMIT, times, 1.05))
        print(ratio_row("a'. checks off: ours / limit", "ours, checks off", LIMIT, times, None))
        return
    times = time_keras(rows, args.repeats)
    times.update(time_mixed_precision(args, x, y, teacher, args.repeats))
    if args.torch:
        times["pytorch loop"] = time_torch(args, x, y, args.repeats)

    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}; batch {args.batch}, {args.steps} steps per epoch, "
        f"{args.repeats} alternated repeats.\n"
    )
    print(
        "| comparison | ours ms/epoch (min / median) | reference ms/epoch (min / median) "
        "| ratio (min) | target | met |"
    )
    print("|---|---|---|---|---|---|")
    print(ratio_row("a. overhead: ours / limit", "ours", LIMIT, times, 1.05))
    print(
        ratio_row(
            "b. cached: ours from cache / student only",
            "ours, cached teacher",
            "student only",
            times,
            1.10,
        )
    )
    if "keras.distillation" in times:
        print(
            ratio_row(
                "c. ours / keras.distillation, logits", "ours", "keras.distillation", times, 1.0
            )
        )
        print(
            ratio_row(
                "c. ours / keras.distillation, + feature",
                "ours + feature match",
                "keras.distillation + feature",
                times,
                0.8,
            )
        )
    print(ratio_row("d. ours / keras.io example", "ours", "keras.io example", times, 1.0))
    if "pytorch loop" in times:
        print(ratio_row("e. ours / PyTorch loop", "ours", "pytorch loop", times, 1.0))
    print(ratio_row("f. XLA on / XLA off", "ours, XLA on", "ours, XLA off", times, None))
    print(
        ratio_row(
            "f. mixed_bfloat16 / float32", "ours, mixed_bfloat16", "ours, float32", times, None
        )
    )
    print_check_rows(times)
    memory = peak_memory(args)
    print(
        f"\nPeak resident memory of a 3-epoch fit: student only {memory['student']:.0f} MiB, "
        f"distillation {memory['distill']:.0f} MiB, ratio "
        f"{memory['distill'] / memory['student']:.2f}"
    )
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"times_ms": times, "peak_memory_mib": memory}, file, indent=1)


if __name__ == "__main__":
    main()
