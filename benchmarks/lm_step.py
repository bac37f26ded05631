"""One distillation step of a GPT-2-style pair: our Distiller against a minimal hand-written loop.

Both compute the same masked loss per token, `(1-a) * CE + a * T^2 * KL`,
averaged over the tokens of weight 1 (keras_hub's `CausalLMPreprocessor`
weights), with the same models, optimizer and batches. Each repeat is one
epoch of `--steps` steps; the two are alternated, and the table gives the
minimum and the median of the repeats, the tokens per second at the minimum
(padding included) and the ratio of the minima. A second table times the
Distiller reading a top-k `TeacherCache` (`top_k_rest="renormalize"`, no
teacher runs) against the student trained alone with the same masked
cross-entropy, on the same batches, two ways: batches that carry the top-k
logits and classes (`cache.dataset(..., expand_top_k=False)`: the step
computes the KL from them, `losses.top_k_distillation_kl`, and never builds
full teacher rows), and batches whose top-k logits the pipeline expands to
full rows (`expand_top_k=True`, the default; the step computes the
full-vocabulary KL). The ratio is that of the first. The peak
resident memory of a fresh process doing the same steps is measured for
both, and for the loss alone (logits given, no models).

    python benchmarks/lm_step.py [--repeats 7] [--steps 4] [--vocabulary 8192] [--length 256]
                                 [--top-k 32] [--no-memory]

Keras 3 only (keras_hub).
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf
from resident_memory import peak_mib

from keras_distill import Distiller
from keras_distill._keras import keras

ALPHA, TEMPERATURE = 0.5, 1.0  # T = 1, as language-model distillation usually runs
OURS, LIMIT = "ours (Distiller)", "limit (hand-written masked loop)"
CACHED, ALONE = "ours, top-k teacher cache", "student alone (masked cross-entropy)"
CACHED_FULL = "ours, top-k teacher cache expanded to full rows"


def gpt2(vocabulary, length, layers, hidden, heads, seed):
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocabulary,
        num_layers=layers,
        num_heads=heads,
        hidden_dim=hidden,
        intermediate_dim=4 * hidden,
        max_sequence_length=length,
        dropout=0.0,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def models(args):
    teacher = gpt2(args.vocabulary, args.length, 2, 128, 4, seed=1)
    student = gpt2(args.vocabulary, args.length, 1, 64, 2, seed=2)
    return teacher, student


def arrays(args):
    """`(x, y, sample_weight)` of `--steps` batches, right-padded as keras_hub yields them."""
    rng = np.random.default_rng(0)
    n = args.batch * args.steps
    tokens = rng.integers(1, args.vocabulary, size=(n, args.length + 1)).astype("int32")
    lengths = rng.integers(args.length // 2, args.length + 2, size=(n, 1))
    mask = (np.arange(args.length + 1)[None] < lengths).astype("int32")
    tokens = tokens * mask
    x = {"token_ids": tokens[:, :-1], "padding_mask": mask[:, :-1]}
    return x, tokens[:, 1:], mask[:, 1:].astype("float32")


def batches(args):
    return tf.data.Dataset.from_tensor_slices(arrays(args)).batch(args.batch).cache()


def masked_loss(labels, teacher_logits, student_logits, weights):
    """The reference loss: Hinton's mix per token, mean over tokens of weight > 0."""
    log_q = tf.nn.log_softmax(student_logits)
    ce = -tf.gather(log_q, labels, batch_dims=2)
    log_p_t = tf.nn.log_softmax(teacher_logits / TEMPERATURE)
    log_q_t = tf.nn.log_softmax(student_logits / TEMPERATURE)
    kl = tf.reduce_sum(tf.exp(log_p_t) * (log_p_t - log_q_t), axis=-1) * TEMPERATURE**2
    per_token = (1.0 - ALPHA) * ce + ALPHA * kl
    return tf.math.divide_no_nan(tf.reduce_sum(per_token * weights), tf.reduce_sum(weights))


def our_masked_loss(labels, teacher_logits, student_logits, weights):
    """The same loss as the Distiller's training step computes it (`_hinton_terms`)."""
    from keras_distill import _hinton_terms
    from keras_distill import _positions

    hard, soft = _hinton_terms.hard_and_soft(labels, teacher_logits, student_logits, TEMPERATURE)
    return _positions.weighted_mean((1.0 - ALPHA) * hard + ALPHA * soft, weights)


class HandWritten(keras.Model):
    """The minimal distillation step: teacher forward, student step on the masked loss."""

    def __init__(self, student, teacher):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.teacher.trainable = False

    def call(self, x):
        return self.student(x)

    def train_step(self, data):
        x, y, weights = data
        teacher_logits = self.teacher(x, training=False)
        with tf.GradientTape() as tape:
            student_logits = self.student(x, training=True)
            loss = masked_loss(y, teacher_logits, student_logits, weights)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {"loss": loss}


def build(kind, args):
    teacher, student = models(args)
    if kind == "ours":
        model = Distiller(student=student, teacher=teacher)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), alpha=ALPHA, temperature=TEMPERATURE)
    else:
        model = HandWritten(student, teacher)
        model.compile(optimizer=keras.optimizers.Adam(1e-4))
    return model


def time_alternated(args, runs):
    """`({name: [ms per step]}, {name: [MiB of page faults per step]})`, one value per repeat,
    of `runs = {name: (model, dataset)}`. Page faults (`ru_minflt`) count the fresh memory a
    step touches: one per new 4 KiB page."""
    for model, data in runs.values():
        model.fit(data, epochs=1, verbose=0)  # trace and warm up
    times = {name: [] for name in runs}
    faults = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, (model, data) in runs.items():
            faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            model.fit(data, epochs=1, verbose=0)
            times[name].append((time.perf_counter() - start) * 1000.0 / args.steps)
            pages = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before
            faults[name].append(pages * resource.getpagesize() / 2**20 / args.steps)
    return times, faults


def cached_and_alone(args):
    """The Distiller reading a top-k `TeacherCache` (no teacher runs) from top-k batches and
    from batches expanded to full rows, and the student trained alone on the same batches
    with the masked cross-entropy."""
    from keras_distill import TeacherCache

    x, y, weights = arrays(args)
    teacher, _ = models(args)
    cache = TeacherCache.build(teacher, x, batch_size=args.batch, top_k=args.top_k)
    runs = {}
    for name, expand in ((CACHED, False), (CACHED_FULL, True)):
        _, student = models(args)
        cached = Distiller(student=student, teacher=cache)
        cached.compile(optimizer=keras.optimizers.Adam(1e-4), alpha=ALPHA, temperature=TEMPERATURE)
        data = cache.dataset(
            x, y, weights, batch_size=args.batch, shuffle=False, expand_top_k=expand
        )
        runs[name] = (cached, data)
    _, alone = models(args)
    alone.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[],
    )
    return {**runs, ALONE: (alone, batches(args))}


def print_times(times, faults, args):
    tokens = args.batch * args.length
    print("| run | ms/step (min / median) | tokens/s (at the min) | page faults, MiB/step |")
    print("|---|---|---|---|")
    for name, values in times.items():
        best = min(values)
        print(
            f"| {name} | {best:.0f} / {statistics.median(values):.0f} | "
            f"{tokens / best * 1000.0:,.0f} | {statistics.median(faults[name]):.0f} |"
        )


def kl_precision(args):
    """Which form `distillation_kl` takes on the first batch (it depends on the logits)."""
    from keras_distill import _kl_forms

    teacher, student = models(args)
    x, _, _ = next(iter(batches(args)))
    ranges = tf.maximum(
        *(_kl_forms.logit_range(tf.cast(model(x), tf.float32)) for model in (teacher, student))
    )
    smallest = float(tf.reduce_min(ranges)) / TEMPERATURE
    largest = float(tf.reduce_max(ranges)) / TEMPERATURE
    if smallest >= _kl_forms.FLOAT32_RANGE:
        path = "float32"
    elif TEMPERATURE <= _kl_forms.FLOAT32_TEMPERATURE and largest < _kl_forms.FLAT_RANGE:
        path = "float32, in the form for nearly flat logits"
    else:
        path = "float64"
    return f"tempered logit ranges {smallest:.2f} to {largest:.2f}: the KL runs in {path}"


def memory_child(kind, args):
    """In a fresh process: the peak resident memory (MiB) of `kind` doing `--steps` steps."""
    if kind in ("loss", "our_loss"):  # The loss and its gradient alone, on given logits.
        # Made by TensorFlow in float32: NumPy's float64 draws would set the peak beforehand.
        shape = (args.batch, args.length, args.vocabulary)
        teacher = tf.random.stateless_normal(shape, seed=(0, 1))
        student = tf.Variable(tf.random.stateless_normal(shape, seed=(0, 2)))
        labels = tf.random.stateless_uniform(
            shape[:2], seed=(0, 3), minval=0, maxval=args.vocabulary, dtype=tf.int32
        )
        weights = tf.ones(shape[:2])
        before = peak_mib()
        with tf.GradientTape() as tape:
            if kind == "loss":
                loss = masked_loss(labels, teacher, student, weights)
            else:
                loss = our_masked_loss(labels, teacher, student, weights)
        tape.gradient(loss, student)
        peak = peak_mib()
        print(peak - before)
        return
    build(kind, args).fit(batches(args), epochs=1, verbose=0)
    print(peak_mib())


def peak_memory(args):
    result = {}
    for kind in ("ours", "limit", "loss", "our_loss"):
        command = [sys.executable, __file__, "--memory-child", kind]
        for flag in ("steps", "batch", "vocabulary", "length"):
            command += [f"--{flag}", str(getattr(args, flag))]
        output = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        ).stdout
        result[kind] = float(output.strip().splitlines()[-1])
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--vocabulary", type=int, default=8192)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--top-k", type=int, default=32, help="logits kept per token")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory table")
    parser.add_argument("--memory-child", choices=("ours", "limit", "loss", "our_loss"))
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args)
        return
    data = batches(args)
    times, faults = time_alternated(
        args, {OURS: (build("ours", args), data), LIMIT: (build("limit", args), data)}
    )
    print(kl_precision(args))
    print(
        f"GPT-2-style pair (teacher 2x128, student 1x64), vocabulary {args.vocabulary}, "
        f"sequence {args.length}, batch {args.batch}; {args.steps} steps per repeat, "
        f"{args.repeats} repeats, alternated"
    )
    print()
    print_times(times, faults, args)
    ratio = min(times[OURS]) / min(times[LIMIT])
    print(f"\nratio of minima, ours / limit: {ratio:.2f} (goal <= 1.10)")
    print()
    times, faults = time_alternated(args, cached_and_alone(args))
    print(f"Top-{args.top_k} teacher cache (`top_k_rest='renormalize'`) against the student alone")
    print()
    print_times(times, faults, args)
    ratio = min(times[CACHED]) / min(times[ALONE])
    full = min(times[CACHED_FULL]) / min(times[ALONE])
    print(f"\nratio of minima, cached / alone: {ratio:.2f} (goal <= 1.15)")
    print(f"ratio of minima, cached with full rows / alone: {full:.2f}")
    if args.no_memory:
        return
    memory = peak_memory(args)
    print()
    print("| peak resident memory | MiB |")
    print("|---|---|")
    print(f"| {OURS}, fresh process, {args.steps} steps | {memory['ours']:.0f} |")
    print(f"| {LIMIT}, fresh process, {args.steps} steps | {memory['limit']:.0f} |")
    print(f"| hand-written loss and gradient alone (growth) | {memory['loss']:.0f} |")
    print(f"| keras_distill's loss and gradient alone (growth) | {memory['our_loss']:.0f} |")


if __name__ == "__main__":
    main()
