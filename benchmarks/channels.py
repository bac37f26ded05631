"""Channel pruning benchmark: accuracy with and without distillation recovery, LiteRT speed.

For each dataset (scikit-learn's digits, MNIST-1D) and seed, trains a small
CNN with BatchNormalization (the unpruned model), then for each fraction of
channels kept (75%, 50%, 25%) prunes it with `prune_channels` (L1 criterion,
counts rounded to multiples of 8) and fine-tunes the pruned model two ways,
for the same epochs with the same optimizer:
- labels only (cross-entropy), and
- recovery by distillation (`recover_channels`): the unpruned model is the
  teacher, logits KD plus feature matches at the ends of the pruned blocks.
Accuracy is of the Keras model on the held-out test split; mean and
standard error over the seeds.

Speed: the float32 `.tflite` files of the seed-0 models, and of a
keras.applications MobileNetV2 (alpha 0.35, 96x96, 1000 classes, random
weights: speed only) at each fraction, timed by LiteRT with one thread:
`tflite_latency` rounds, alternated between the files (each round starting
one file later), minimum and median over the rounds.

The results are written to docs/compression.md under the heading
"## Channel pruning benchmark" (replacing that section only):

    .venv/bin/python benchmarks/channels.py
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import keras_distill  # noqa: E402
from keras_distill import datasets  # noqa: E402
from keras_distill._keras import GENERATION  # noqa: E402
from keras_distill._keras import KERAS_VERSION  # noqa: E402
from keras_distill._keras import keras  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/channels.py"
HEADING = "## Channel pruning benchmark"
FRACTIONS = (0.75, 0.5, 0.25)


def conv_block(x, filters, kernel, name, rank):
    conv = keras.layers.Conv2D if rank == 2 else keras.layers.Conv1D
    x = conv(filters, kernel, padding="same", name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def digits_model():
    """8x8 images: three conv blocks (32, 64, 64), max pooling, global pooling, Dense(10)."""
    inputs = keras.Input((8, 8, 1))
    x = conv_block(inputs, 32, 3, "block1", 2)
    x = conv_block(x, 64, 3, "block2", 2)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = conv_block(x, 64, 3, "block3", 2)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="digits_cnn")


def mnist1d_model():
    """Length-40 signals: three Conv1D blocks (32 each), max pooling, Flatten, Dense(10)."""
    inputs = keras.Input((40,))
    x = keras.layers.Reshape((40, 1), name="channels")(inputs)
    x = conv_block(x, 32, 5, "block1", 1)
    x = conv_block(x, 32, 3, "block2", 1)
    x = keras.layers.MaxPooling1D(2, name="pool1")(x)
    x = conv_block(x, 32, 3, "block3", 1)
    x = keras.layers.MaxPooling1D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="mnist1d_cnn")


DATASETS = {
    "digits": (lambda: datasets.digits(), digits_model),
    "MNIST-1D": (lambda: datasets.mnist1d(), mnist1d_model),
}


def accuracy(model, x, y):
    return float(np.mean(model.predict(x, batch_size=1000, verbose=0).argmax(-1) == y))


def train(model, x, y, epochs, learning_rate, batch_size):
    steps = epochs * -(-len(x) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    model.compile(
        keras.optimizers.Adam(schedule),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)


def run_dataset(name, args):
    load, build = DATASETS[name]
    (x_train, y_train), (x_test, y_test) = load()
    rows = {"unpruned": [], **{f: {"pruned": [], "labels": [], "kd": []} for f in FRACTIONS}}
    params, models = {}, {}
    for seed in args.seeds:
        keras.utils.set_random_seed(seed)
        base = build()
        train(base, x_train, y_train, args.epochs, args.learning_rate, args.batch_size)
        rows["unpruned"].append(accuracy(base, x_test, y_test))
        params["unpruned"] = base.count_params()
        if seed == args.seeds[0]:
            models["unpruned"] = base
        for fraction in FRACTIONS:
            pruned = keras_distill.prune_channels(base, fraction=fraction)
            params[fraction] = pruned.count_params()
            rows[fraction]["pruned"].append(accuracy(pruned, x_test, y_test))
            keras.utils.set_random_seed(seed + 100)
            labels = keras_distill.prune_channels(base, fraction=fraction)
            train(labels, x_train, y_train, args.finetune_epochs, args.finetune_lr, args.batch_size)
            rows[fraction]["labels"].append(accuracy(labels, x_test, y_test))
            keras.utils.set_random_seed(seed + 100)
            steps = args.finetune_epochs * -(-len(x_train) // args.batch_size)
            optimizer = keras.optimizers.Adam(
                keras.optimizers.schedules.CosineDecay(args.finetune_lr, steps)
            )
            keras_distill.recover_channels(
                pruned,
                base,
                x_train,
                y_train,
                epochs=args.finetune_epochs,
                batch_size=args.batch_size,
                optimizer=optimizer,
                alpha=args.alpha,
                temperature=args.temperature,
                feature_weight=args.feature_weight,
            )
            rows[fraction]["kd"].append(accuracy(pruned, x_test, y_test))
            if seed == args.seeds[0]:
                models[fraction] = pruned
            print(name, seed, fraction, {k: v[-1] for k, v in rows[fraction].items()}, flush=True)
    return {"rows": rows, "params": params, "models": models, "x_test": x_test}


def alternated_latency(paths, x, rounds, repeats):
    """`{name: (min_ms, median_ms)}`: LiteRT, 1 thread, rounds alternated between the files."""
    mins = {name: [] for name in paths}
    medians = {name: [] for name in paths}
    names = list(paths)
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            timing = keras_distill.tflite_latency(
                paths[name], x, repeats=repeats, warmup=3, num_threads=1
            )
            mins[name].append(timing["min_ms"])
            medians[name].append(timing["median_ms"])
    return {name: (min(mins[name]), statistics.median(medians[name])) for name in names}


def speed(models, x, folder, args, tag):
    """Exports each model to float32 .tflite; sizes and alternated 1-thread latency."""
    paths, sizes, parity = {}, {}, {}
    for name, model in models.items():
        path = os.path.join(folder, f"{tag}_{name}.tflite")
        report = keras_distill.export_tflite(model, path, sample_inputs=x[:16])
        paths[name], sizes[name] = path, report.file_size_bytes
        parity[name] = report.top1_agreement
    latency = alternated_latency(paths, x[:1], args.rounds, args.repeats)
    return {"sizes": sizes, "latency": latency, "parity": parity}


def mobilenet(args, folder):
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None)
    models = {"unpruned": model}
    for fraction in FRACTIONS:
        models[fraction] = keras_distill.prune_channels(model, fraction=fraction)
    x = np.random.default_rng(0).uniform(-1, 1, size=(16, 96, 96, 3)).astype("float32")
    result = speed(models, x, folder, args, "mobilenet")
    result["params"] = {name: m.count_params() for name, m in models.items()}
    return result


def mean_se(values):
    values = 100.0 * np.asarray(values)
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{values.mean():.1f} +/- {se:.1f}"


def label(name):
    return "100% (unpruned)" if name == "unpruned" else f"{int(round(100 * name))}%"


def speed_table(result, reference="unpruned"):
    base_min, base_median = result["latency"][reference]
    lines = [
        "| channels kept | parameters | .tflite bytes | x bytes | ms min | ms median "
        "| speed-up (min) | speed-up (median) | parity |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (low, median) in result["latency"].items():
        lines.append(
            f"| {label(name)} | {result['params'][name]:,} | {result['sizes'][name]:,} "
            f"| {result['sizes'][name] / result['sizes'][reference]:.3f} | {low:.3f} "
            f"| {median:.3f} | {base_min / low:.2f}x | {base_median / median:.2f}x "
            f"| {result['parity'][name]:.4f} |"
        )
    return lines


def markdown(args, results, mobile, seconds):
    seeds = ", ".join(str(s) for s in args.seeds)
    lines = [
        HEADING,
        "",
        "Recorded by `benchmarks/channels.py`. Reproduce with:",
        "",
        f"    {COMMAND}",
        "",
        f"Setup: seeds {seeds} (all of them, none left out; a seed sets the initial weights and "
        "the shuffling, the data split is fixed). Each unpruned CNN trains "
        f"{args.epochs} epochs (Adam {args.learning_rate:g}, cosine decay to 0, batch "
        f"{args.batch_size}). `prune_channels(model, fraction)` (L1 criterion, round_to 8) "
        "then removes channels, and the pruned model fine-tunes for "
        f"{args.finetune_epochs} epochs (Adam {args.finetune_lr:g}, cosine decay) either on the "
        "labels alone or with `recover_channels` (teacher: the unpruned model; alpha "
        f"{args.alpha:g}, T {args.temperature:g}, feature matches of weight "
        f"{args.feature_weight:g} at the ends of the pruned blocks). Accuracy: the Keras model "
        "on the test split, mean +/- standard error over the seeds. `no fine-tuning`: right "
        "after pruning. The fine-tuned models train "
        f"{args.finetune_epochs} more epochs than the unpruned one. "
        f"{GENERATION} {KERAS_VERSION}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPU cores (shared), {seconds:.0f} s in all.",
        "",
    ]
    for name, result in results.items():
        rows, params = result["rows"], result["params"]
        unpruned = 100 * np.mean(rows["unpruned"])
        lines += [
            f"### {name}",
            "",
            "| channels kept | parameters | no fine-tuning | fine-tuned on labels "
            "| recovered by distillation | distillation - labels (points) "
            "| recovered - unpruned (points) |",
            "|---|---|---|---|---|---|---|",
            f"| 100% (unpruned) | {params['unpruned']:,} | {mean_se(rows['unpruned'])} | | | | |",
        ]
        for fraction in FRACTIONS:
            row = rows[fraction]
            gain = np.asarray(row["kd"]) - np.asarray(row["labels"])
            gap = np.asarray(row["kd"]) - np.asarray(rows["unpruned"])
            lines.append(
                f"| {label(fraction)} | {params[fraction]:,} | {mean_se(row['pruned'])} "
                f"| {mean_se(row['labels'])} | {mean_se(row['kd'])} | {mean_se(gain)} "
                f"| {mean_se(gap)} |"
            )
        lines += [
            "",
            f"Unpruned mean: {unpruned:.1f}%. Per seed (seed order), recovered - "
            "labels in points: "
            + "; ".join(
                f"{label(f)}: "
                + ", ".join(
                    f"{100 * (k - b):+.1f}" for k, b in zip(rows[f]["kd"], rows[f]["labels"])
                )
                for f in FRACTIONS
            )
            + ".",
            "",
        ]
        lines += [
            f"LiteRT float32 files of the seed-{args.seeds[0]} models (distillation-recovered), "
            f"one example, 1 thread, {args.rounds} alternated rounds of {args.repeats} timed "
            "calls after 3 warm-up calls; `parity`: top-1 agreement of the file with its Keras "
            "model:",
            "",
            *speed_table(result["speed"] | {"params": params}),
            "",
        ]
    lines += [
        "### MobileNetV2 (alpha 0.35, 96x96, random weights): speed only",
        "",
        "keras.applications MobileNetV2 with 1,000 classes, pruned by `prune_channels` "
        "(the classifier keeps its units), float32 `.tflite` files, one 96x96x3 image, "
        f"1 LiteRT thread, {args.rounds} alternated rounds of {args.repeats} timed calls:",
        "",
        *speed_table(mobile),
        "",
    ]
    return "\n".join(lines)


def write(path, section):
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    if HEADING in text:
        start = text.index(HEADING)
        end = text.find("\n## ", start + len(HEADING))
        text = text[:start] + section + ("" if end < 0 else text[end:])
    elif "## Compression benchmark" in text:
        start = text.index("## Compression benchmark")
        text = text[:start] + section + "\n" + text[start:]
    else:
        text = text + "\n" + section
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--finetune-epochs", type=int, default=6)
    parser.add_argument("--finetune-lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--feature-weight", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--output", default="docs/compression.md")
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args()
    start = time.time()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in args.datasets:
            results[name] = run_dataset(name, args)
            x_test = results[name]["x_test"]
            results[name]["speed"] = speed(results[name].pop("models"), x_test, folder, args, name)
        mobile = mobilenet(args, folder)
    section = markdown(args, results, mobile, time.time() - start)
    print(section)
    if not args.no_write:
        write(args.output, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
