"""Peak memory of the loss part of one LM distillation step: whole logits vs chunked.

The loss part of a training step: from the teacher's and the student's final
hidden states and LM heads, the per-position divergence (forward KL, T = 2,
a padding mask), its weighted mean, and its gradient with respect to the
student's hidden states and head kernel, in one `tf.function`.

- **whole**: logits `(batch, seq, vocab)` of both models, `losses.distillation_kl`
  on them, the gradient by `tf.GradientTape`.
- **chunked-N**: `keras_distill.chunked_distillation_loss(..., chunk_size=N)`.

Each variant runs in a fresh process: it builds its inputs, reads its peak
resident set size (`resident_memory.peak_mib`: the kernel's `VmHWM`),
runs the step `--steps` times and reads the peak again; the table gives the
difference (the step's own peak, above what the process held before it).
`tf.config.experimental.get_memory_info` is not available for CPU devices
("Allocator stats not available for device 'CPU:0'"), hence RSS.
Step times are the minimum and median of the steps after the first (which
traces the graph), over all the alternated rounds.

    python benchmarks/token_loss_memory.py [--vocab 32000 --seq 512 --batch 4] [--rounds 2]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from resident_memory import peak_mib

HIDDEN_TEACHER, HIDDEN_STUDENT, TEMPERATURE = 256, 128, 2.0


def child(variant, vocab, seq, batch, steps):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    from keras_distill import chunked_distillation_loss
    from keras_distill import losses

    rng = np.random.default_rng(0)
    teacher_hidden = tf.constant(rng.normal(size=(batch, seq, HIDDEN_TEACHER)), tf.float32)
    student_hidden = tf.Variable(rng.normal(size=(batch, seq, HIDDEN_STUDENT)), dtype=tf.float32)
    scale_t, scale_s = HIDDEN_TEACHER**-0.5, HIDDEN_STUDENT**-0.5
    teacher_kernel = tf.constant(
        rng.normal(scale=scale_t, size=(HIDDEN_TEACHER, vocab)), tf.float32
    )
    student_kernel = tf.Variable(
        rng.normal(scale=scale_s, size=(HIDDEN_STUDENT, vocab)), dtype=tf.float32
    )
    lengths = rng.integers(seq // 2, seq + 1, size=batch)
    mask = tf.constant(np.arange(seq)[None, :] < lengths[:, None], tf.float32)
    variables = [student_hidden, student_kernel]

    if variant == "whole":

        def loss_fn():
            teacher_logits = tf.matmul(teacher_hidden, teacher_kernel)
            student_logits = tf.matmul(student_hidden, student_kernel)
            values = losses.distillation_kl(teacher_logits, student_logits, TEMPERATURE)
            return tf.math.divide_no_nan(tf.reduce_sum(values * mask), tf.reduce_sum(mask))
    else:
        chunk_size = int(variant.split("-")[1])

        def loss_fn():
            return chunked_distillation_loss(
                teacher_hidden,
                student_hidden,
                teacher_kernel,
                student_kernel,
                temperature=TEMPERATURE,
                sample_weight=mask,
                chunk_size=chunk_size,
            )

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = loss_fn()
        return value, tape.gradient(value, variables)

    before = peak_mib()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        value, grads = step()
        grad_norm = float(tf.linalg.global_norm(grads))
        times.append(time.perf_counter() - start)
    after = peak_mib()
    print(
        json.dumps(
            {
                "variant": variant,
                "before_mib": before,
                "peak_delta_mib": after - before,
                "loss": float(value),
                "grad_norm": grad_norm,
                "times": times[1:],
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunks", default="128,512")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.vocab, args.seq, args.batch, args.steps)
        return
    variants = ["whole"] + [f"chunked-{size}" for size in args.chunks.split(",")]
    results = {variant: [] for variant in variants}
    for _ in range(args.rounds):
        for variant in variants:  # Alternated: whole, chunked-..., whole, ...
            command = [sys.executable, __file__, "--child", variant]
            command += ["--vocab", str(args.vocab), "--seq", str(args.seq)]
            command += ["--batch", str(args.batch), "--steps", str(args.steps)]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results[variant].append(json.loads(output.strip().splitlines()[-1]))
    logits_mib = args.batch * args.seq * args.vocab * 4 / 2**20
    print(
        f"vocab {args.vocab}, seq {args.seq}, batch {args.batch}, hidden teacher "
        f"{HIDDEN_TEACHER} / student {HIDDEN_STUDENT}, forward KL T={TEMPERATURE}; one float32 "
        f"(batch, seq, vocab) tensor = {logits_mib:.0f} MiB; {args.rounds} rounds x "
        f"{args.steps} steps"
    )
    print()
    header = (
        "| variant | peak RSS above start, MiB (min / max) | ratio to whole | "
        "step s (min / median) | loss | grad norm |"
    )
    print(header)
    print("|---|---|---|---|---|---|")
    whole = min(r["peak_delta_mib"] for r in results["whole"])
    for variant in variants:
        runs = results[variant]
        peaks = [r["peak_delta_mib"] for r in runs]
        times = [t for r in runs for t in r["times"]]
        timing = f"{min(times):.2f} / {statistics.median(times):.2f}" if times else "-"
        print(
            f"| {variant} | {min(peaks):.0f} / {max(peaks):.0f} | {min(peaks) / whole:.3f} | "
            f"{timing} | {runs[0]['loss']:.6f} | {runs[0]['grad_norm']:.6f} |"
        )


if __name__ == "__main__":
    main()
