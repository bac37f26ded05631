"""Token-level distillation of a byte-level GPT-2-style LM on the standard library's sources.

A teacher (`--teacher-layers` layers, width `--teacher-width`) is trained once
on the train split of `keras_distill.data.text.stdlib_corpus`; then a student
(`--student-layers`, `--student-width`) is trained for the same fixed token
budget (`--steps` steps of `--batch` windows of `--seq` bytes) alone
(cross-entropy) and distilled with each divergence (`alpha` = weight of the
divergence, the rest cross-entropy; 1 by default; T = 1), for each seed.
Reported on two splits of files never seen in training: the validation
split, on which settings are chosen, and the test split, held out from that
choice:

- **bits per byte**: mean next-byte cross-entropy / ln 2 over the counted
  positions (a token is a byte; the end-of-file token counts too);
- **top-1 agreement**: share of positions where the student's most likely
  next byte is the teacher's;
- **R** = (CE_alone - CE_kd) / (CE_alone - CE_teacher), per seed (the same
  seed's student alone), the share of the teacher-student gap recovered.

    python benchmarks/lm_quality.py [--seeds 0,1,2] [--steps 600] [--losses kl,reverse_kl,jsd,gkd]

`gkd` is on-policy distillation (`OnPolicyDistiller`): with probability
`--gkd-lmbda` a step keeps the first `--gkd-prompt` bytes of each window and
trains on the student's own continuation (sampled at T = 1, cut at the
end-of-file token), otherwise on the window; the loss is the generalized JSD
with `--gkd-beta`, mixed with cross-entropy on the data's steps by `alpha`.
With `--gkd-warm-start F`, the GKD student first trains alone for a share `F`
of the steps, then on-policy for the rest (the same total; Agarwal et al. start
from a student already fine-tuned on the data).

The defaults (teacher 4 layers x 128 for 1,200 steps, students 2 x 64 for 600 steps) are
sized for a 30-minute budget on 2 CPU cores (about 11 minutes with one divergence);
`--teacher-width 256 --student-width 128` costs about four times the compute.

Runs on Keras 3 (keras_hub). Prints a markdown table; the whole run is timed.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_distill import Distiller  # noqa: E402
from keras_distill import OnPolicyDistiller  # noqa: E402
from keras_distill import losses  # noqa: E402
from keras_distill._keras import keras  # noqa: E402
from keras_distill.data import text  # noqa: E402

GKD = "gkd"
"""The on-policy row: `OnPolicyDistiller` with the generalized JSD (Agarwal et al. 2024)."""


def gpt2(layers, width, seq, seed):
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=text.VOCABULARY_SIZE,
        num_layers=layers,
        num_heads=max(1, width // 64),
        hidden_dim=width,
        intermediate_dim=4 * width,
        max_sequence_length=seq,
        dropout=0.0,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def windows(split, budget, seq):
    ids = text.stdlib_corpus(split, max_bytes=budget)
    return text.causal_lm_windows(ids, seq)


def dataset(data, batch, steps, seed):
    x, y, weights = data
    ds = tf.data.Dataset.from_tensor_slices((x, y, weights))
    ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True).repeat()
    return ds.batch(batch, drop_remainder=True).take(steps).prefetch(2)


def schedule(steps, peak):
    warmup = max(1, steps // 20)
    return keras.optimizers.schedules.CosineDecay(
        0.0, steps - warmup, alpha=0.1, warmup_target=peak, warmup_steps=warmup
    )


def train_alone(model, data, args, steps, seed, peak):
    model.compile(
        optimizer=keras.optimizers.Adam(schedule(steps, peak)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[],
    )
    model.fit(dataset(data, args.batch, steps, seed), epochs=1, verbose=0)
    return model


def distil(student, teacher, data, args, loss_name, seed):
    steps = args.steps
    if loss_name == GKD and args.gkd_warm_start > 0:
        warm = int(round(args.steps * args.gkd_warm_start))
        train_alone(student, data, args, warm, seed, args.lr)
        steps, seed = args.steps - warm, seed + 10_000  # The rest, on other windows.
    if loss_name == GKD:
        distiller = OnPolicyDistiller(
            student=student,
            teacher=teacher,
            padding_mask_input="padding_mask",
            lmbda=args.gkd_lmbda,
            prompt_length=args.gkd_prompt or args.seq // 2,
            end_token_id=text.END_OF_TEXT,
            seed=seed,
        )
        loss = losses.GeneralizedJSD(beta=args.gkd_beta)
    else:
        distiller = Distiller(student=student, teacher=teacher, padding_mask_input="padding_mask")
        loss = losses.get(loss_name)
    distiller.compile(
        optimizer=keras.optimizers.Adam(schedule(steps, args.lr)),
        distillation_loss=loss,
        alpha=args.alpha,
        temperature=1.0,
    )
    distiller.fit(dataset(data, args.batch, steps, seed), epochs=1, verbose=0)
    return student


def logits_of(model, x, batch=64):
    call = tf.function(lambda inputs: model(inputs, training=False))
    parts = []
    for start in range(0, len(x["token_ids"]), batch):
        part = {key: value[start : start + batch] for key, value in x.items()}
        parts.append(call(part).numpy())
    return np.concatenate(parts)


def evaluate(model, split):
    """`(bits per byte, top-1 agreement)` of `model` on a split `{"data", "teacher_top1"}`."""
    return bits_and_agreement(
        logits_of(model, split["data"][0]), split["teacher_top1"], split["data"]
    )


def bits_and_agreement(logits, teacher_top1, data):
    _, y, weights = data
    shifted = logits.astype(np.float64) - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, y[..., None], axis=-1)[..., 0]
    bits = float((nll * weights).sum() / weights.sum() / np.log(2.0))
    agreement = float(((logits.argmax(-1) == teacher_top1) * weights).sum() / weights.sum())
    return bits, agreement


def table(title, teacher_bits, rows):
    """A markdown table of one split: each student's mean ± spread, R and wins over alone."""
    print(f"\n{title} (teacher {teacher_bits:.4f} bits/byte):\n")
    print("| student | bits/byte | top-1 agreement with teacher | R | better than alone |")
    print("|---|---|---|---|---|")
    print(f"| teacher | {teacher_bits:.4f} | 1 | - | - |")
    alone_bits = [bits for bits, _ in rows["alone"]]
    for name, results in rows.items():
        bits = [b for b, _ in results]
        agreement = [a for _, a in results]
        if name == "alone":
            recovered, better = "0", "-"
        else:
            gaps = [(a - b) / (a - teacher_bits) for a, b in zip(alone_bits, bits)]
            recovered = spread(gaps)
            better = f"{sum(b < a for a, b in zip(alone_bits, bits))}/{len(bits)} seeds"
        print(f"| {name} | {spread(bits)} | {spread(agreement)} | {recovered} | {better} |")
    print(
        "\nPer seed (bits/byte): "
        + "; ".join(
            f"{name} " + ", ".join(f"{b:.4f}" for b, _ in results) for name, results in rows.items()
        )
    )


def spread(values):
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--losses", default="kl,reverse_kl,jsd")
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=600, help="student steps per run")
    parser.add_argument("--teacher-steps", type=int, default=1200)
    parser.add_argument("--teacher-layers", type=int, default=4)
    parser.add_argument("--teacher-width", type=int, default=128)
    parser.add_argument("--student-layers", type=int, default=2)
    parser.add_argument("--student-width", type=int, default=64)
    parser.add_argument("--train-bytes", type=int, default=2_000_000)
    parser.add_argument("--validation-bytes", type=int, default=60_000)
    parser.add_argument("--test-bytes", type=int, default=60_000)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--gkd-lmbda", type=float, default=0.5, help="gkd: on-policy share")
    parser.add_argument("--gkd-beta", type=float, default=0.5, help="gkd: the JSD's beta")
    parser.add_argument(
        "--gkd-prompt", type=int, default=0, help="gkd: prompt bytes (0: half the window)"
    )
    parser.add_argument(
        "--gkd-warm-start",
        type=float,
        default=0.0,
        help="gkd: share of the steps trained alone first (0: on-policy from the start)",
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    names = args.losses.split(",")
    start = time.perf_counter()
    train = windows("train", args.train_bytes, args.seq)
    splits = {
        "validation": {"data": windows("validation", args.validation_bytes, args.seq)},
        "test": {"data": windows("test", args.test_bytes, args.seq)},
    }

    teacher = gpt2(args.teacher_layers, args.teacher_width, args.seq, seed=1000)
    train_alone(teacher, train, args, args.teacher_steps, seed=1000, peak=args.lr)
    teacher.trainable = False
    for split in splits.values():
        teacher_logits = logits_of(teacher, split["data"][0])
        split["teacher_top1"] = teacher_logits.argmax(-1)
        split["teacher_bits"], _ = bits_and_agreement(
            teacher_logits, split["teacher_top1"], split["data"]
        )
        split["rows"] = {name: [] for name in ["alone", *names]}
    teacher_time = time.perf_counter() - start
    bits = " / ".join(f"{split['teacher_bits']:.4f}" for split in splits.values())
    print(f"teacher: {bits} bits/byte on validation / test, trained in {teacher_time:.0f} s")

    for seed in seeds:
        student = train_alone(
            gpt2(args.student_layers, args.student_width, args.seq, seed),
            train,
            args,
            args.steps,
            seed,
            args.lr,
        )
        for split in splits.values():
            split["rows"]["alone"].append(evaluate(student, split))
        for name in names:
            student = gpt2(args.student_layers, args.student_width, args.seq, seed)
            distil(student, teacher, train, args, name, seed)
            for split in splits.values():
                split["rows"][name].append(evaluate(student, split))
        print(
            f"seed {seed}, validation: "
            + ", ".join(f"{k} {v[-1][0]:.4f}" for k, v in splits["validation"]["rows"].items())
        )

    total = time.perf_counter() - start
    print()
    print(
        f"Teacher {args.teacher_layers}x{args.teacher_width} ({args.teacher_steps} steps), "
        f"student {args.student_layers}x{args.student_width} ({args.steps} steps of "
        f"{args.batch}x{args.seq} bytes = {args.steps * args.batch * args.seq:,} tokens), "
        f"alpha={args.alpha}, T=1, seeds {seeds}; train {len(train[1])} windows "
        f"({args.train_bytes:,} bytes); wall time {total:.0f} s"
        + (f"; GKD warm start {args.gkd_warm_start:g}" if GKD in names else "")
    )
    for name, split in splits.items():
        title = "Validation (settings chosen here)" if name == "validation" else "Test (held out)"
        table(f"{title}, {len(split['data'][1])} windows", split["teacher_bits"], split["rows"])


if __name__ == "__main__":
    main()
