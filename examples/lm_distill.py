"""Distil a byte-level GPT-2-style language model, offline, on the standard library's sources.

Builds the corpus (`keras_distill.data.text`: the running Python's own
library files, split by file), trains a teacher (or loads it from
`--teacher-path`), trains the same small student alone and with the
`Distiller` (per-token divergence, padding-masked), and prints held-out bits
per byte, top-1 agreement with the teacher and a few greedy continuations
from each model side by side. A few minutes on 2 CPU cores with the defaults.

    python examples/lm_distill.py [--loss reverse_kl] [--steps 150] [--teacher-path t.keras]
"""

import argparse
import os

import numpy as np
import tensorflow as tf

from keras_distill import Distiller
from keras_distill import losses
from keras_distill._keras import keras
from keras_distill.data import text

PROMPTS = ("def ", "import ", "class ", "    return ")


def gpt2(layers, width, seq, seed):
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=text.VOCABULARY_SIZE,
        num_layers=layers,
        num_heads=max(1, width // 32),
        hidden_dim=width,
        intermediate_dim=4 * width,
        max_sequence_length=seq,
        dropout=0.0,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def batches(data, batch, steps, seed):
    ds = tf.data.Dataset.from_tensor_slices(data).shuffle(len(data[1]), seed=seed).repeat()
    return ds.batch(batch, drop_remainder=True).take(steps)


def optimizer(steps, peak=3e-3):
    warmup = max(1, steps // 20)
    decay = keras.optimizers.schedules.CosineDecay(
        0.0, steps - warmup, alpha=0.1, warmup_target=peak, warmup_steps=warmup
    )
    return keras.optimizers.Adam(decay)


def train_alone(model, data, batch, steps, seed):
    model.compile(
        optimizer=optimizer(steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[],
    )
    model.fit(batches(data, batch, steps, seed), epochs=1, verbose=0)
    return model


def logits_of(model, x, batch=64):
    parts = []
    for start in range(0, len(x["token_ids"]), batch):
        part = {key: value[start : start + batch] for key, value in x.items()}
        parts.append(np.asarray(model(part, training=False)))
    return np.concatenate(parts)


def scores(logits, teacher_top1, data):
    """(bits per byte, top-1 agreement with the teacher) over the counted positions."""
    _, y, weights = data
    shifted = logits.astype(np.float64) - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, y[..., None], axis=-1)[..., 0]
    bits = float((nll * weights).sum() / weights.sum() / np.log(2.0))
    agreement = float(((logits.argmax(-1) == teacher_top1) * weights).sum() / weights.sum())
    return bits, agreement


def continuation(model, prompt, seq, length):
    """Greedy continuation of `prompt`, `length` bytes at most, as text."""
    ids = text.encode(prompt)
    token_ids = np.full((1, seq), text.PAD, np.int32)
    token_ids[0, : len(ids)] = ids
    mask = np.zeros((1, seq), bool)
    mask[0, : len(ids)] = True
    model.compile(sampler="greedy")
    out = model.generate(
        {"token_ids": token_ids, "padding_mask": mask},
        max_length=min(seq, len(ids) + length),
        stop_token_ids=None,
    )
    generated = np.asarray(out["token_ids"])[0, len(ids) : min(seq, len(ids) + length)]
    return text.decode(generated).split("\n")[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", default="kl", choices=losses.names())
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=150, help="student training steps")
    parser.add_argument("--teacher-steps", type=int, default=400)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--train-bytes", type=int, default=1_000_000)
    parser.add_argument("--test-bytes", type=int, default=30_000)
    parser.add_argument("--teacher-path", default=None, help="load the teacher here, or save it")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    train = text.causal_lm_windows(text.stdlib_corpus("train", args.train_bytes), args.seq)
    test = text.causal_lm_windows(text.stdlib_corpus("test", args.test_bytes), args.seq)
    print(f"corpus: {len(train[1])} train windows, {len(test[1])} test windows of {args.seq}")

    if args.teacher_path and os.path.exists(args.teacher_path):
        teacher = keras.models.load_model(args.teacher_path, compile=False)
        print(f"teacher: loaded {args.teacher_path}")
    else:
        teacher = train_alone(
            gpt2(4, 128, args.seq, 1000), train, args.batch, args.teacher_steps, 1
        )
        if args.teacher_path:
            teacher.save(args.teacher_path)
    teacher.trainable = False

    alone = train_alone(gpt2(2, 64, args.seq, args.seed), train, args.batch, args.steps, args.seed)
    distilled = gpt2(2, 64, args.seq, args.seed)
    distiller = Distiller(student=distilled, teacher=teacher, padding_mask_input="padding_mask")
    distiller.compile(
        optimizer=optimizer(args.steps),
        distillation_loss=args.loss,
        alpha=args.alpha,
        temperature=1.0,
    )
    distiller.fit(batches(train, args.batch, args.steps, args.seed), epochs=1, verbose=0)

    teacher_logits = logits_of(teacher, test[0])
    top1 = teacher_logits.argmax(-1)
    models = {"teacher": teacher, "student alone": alone, f"distilled ({args.loss})": distilled}
    results = {"teacher": scores(teacher_logits, top1, test)}
    results["student alone"] = scores(logits_of(alone, test[0]), top1, test)
    results[f"distilled ({args.loss})"] = scores(logits_of(distilled, test[0]), top1, test)

    print()
    print("| model | test bits/byte | top-1 agreement with teacher |")
    print("|---|---|---|")
    for name, (bits, agreement) in results.items():
        print(f"| {name} | {bits:.3f} | {agreement:.3f} |")
    print()
    for prompt in PROMPTS:
        print(f"prompt {prompt!r}:")
        for name, model in models.items():
            print(f"  {name:>20}: {continuation(model, prompt, args.seq, 40)!r}")
    return results


if __name__ == "__main__":
    main()
