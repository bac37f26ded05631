"""Quality benchmark: when does distillation help, and by how much?

On generated MNIST-1D and scikit-learn digits, over several seeds, trains a
teacher, the student alone, and the same student with several distillation
recipes, and prints test accuracy (mean +- standard error over seeds), the
paired difference to the student alone, and the gap recovery

    R = (acc(recipe) - acc(alone)) / (acc(teacher) - acc(alone))

computed from the means. Seeds change the initialisations and the batch
order; the data split is fixed per dataset, so differences are paired.

    python benchmarks/quality.py                 # 5 seeds, both datasets
    python benchmarks/quality.py --quick         # 2 seeds, fewer epochs (smoke run)
    python benchmarks/quality.py --seeds 0 1 2 --datasets digits --out outputs/quality.json
    python benchmarks/quality.py --recipe --out outputs/quality_recipe.json
    python benchmarks/quality.py --distill --out outputs/quality_distill.json

`--distill` measures the one call `keras_distill.distill()` against the
student alone and plain KD with the Distiller's defaults (alpha 0.5, T 4,
labelled data only), each trained on all labelled examples for the epoch
count its early-stopped run inside `distill()` found, on MNIST-1D, digits,
scikit-learn's breast-cancer table, and two datasets held out of tuning:
flattened digits on a 20x20 canvas (`canvas`, CNN teacher) and generated
majority sequences (`sequence`, transformer teacher).

`--recipe` runs the recommended recipe with hyperparameters selected on a
validation split carved from the training data (never the test set): the
student alone and every candidate train on the same labelled part with the
same early stopping on validation accuracy; the candidate with the best mean
validation accuracy over seeds is reported on the test set.

Results and commands are recorded in docs/quality.md.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_distill import Distiller  # noqa: E402
from keras_distill import FeatureMatch  # noqa: E402
from keras_distill import TeacherCache  # noqa: E402
from keras_distill import augment  # noqa: E402
from keras_distill import datasets  # noqa: E402
from keras_distill import distill  # noqa: E402
from keras_distill import schedules  # noqa: E402
from keras_distill import transfer  # noqa: E402
from keras_distill._keras import GENERATION  # noqa: E402
from keras_distill._keras import keras  # noqa: E402
from keras_distill.evaluation import model_outputs  # noqa: E402
from keras_distill.recipe import BestOnValidation  # noqa: E402

NUM_CLASSES = 10


# ---------------------------------------------------------------- models


def mnist1d_teacher():
    inputs = keras.Input((40,))
    x = keras.layers.Reshape((40, 1))(inputs)
    x = keras.layers.Conv1D(32, 5, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.Conv1D(32, 5, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.Conv1D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.Flatten(name="t_features")(x)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(x), name="cnn_teacher")


def mnist1d_student():
    """MLP student: fits the training set and overfits (test far below train)."""
    inputs = keras.Input((40,))
    x = keras.layers.Dense(64, activation="relu")(inputs)
    x = keras.layers.Dense(64, activation="relu", name="s_features")(x)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(x), name="mlp_student")


def mnist1d_small_cnn():
    """Tiny global-pooling CNN: underfits (train and test accuracy close and low)."""
    inputs = keras.Input((40,))
    x = keras.layers.Reshape((40, 1))(inputs)
    x = keras.layers.Conv1D(8, 5, padding="same", activation="relu")(x)
    x = keras.layers.Conv1D(8, 5, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(x), name="gap_cnn_student")


def digits_teacher():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten(name="t_features")(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(x), name="cnn_teacher")


def digits_student():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(32, activation="relu", name="s_features")(x)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(x), name="mlp_student")


def digits_small_cnn():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(x), name="gap_cnn_student")


# ---------------------------------------------------------------- setups


def load(name, args):
    if name == "mnist1d":
        (x, y), (x_test, y_test) = datasets.mnist1d(num_samples=5000, seed=42)
        # Transfer set: more generated signals from another seed, used without labels.
        (extra, _), _ = datasets.mnist1d(num_samples=args.transfer_size, train_split=1.0, seed=7)
        return {
            "data": (x, y, x_test, y_test),
            "extra": extra,
            "teacher": mnist1d_teacher,
            "student": mnist1d_student,
            "small": mnist1d_small_cnn,
            "augmentation": augment.signal_augmentation(max_shift=3, noise_std=0.05),
            "batch_size": 128,
            "epochs": args.epochs or 20,
        }
    (x, y), (x_test, y_test) = datasets.digits(train_fraction=0.5, seed=0)
    return {
        "data": (x, y, x_test, y_test),
        "extra": None,
        "teacher": digits_teacher,
        "student": digits_student,
        "small": digits_small_cnn,
        "augmentation": augment.image_augmentation(max_translation=1),
        "batch_size": 64,
        "epochs": args.epochs or 30,
    }


def accuracy(model, x, y):
    return float(np.mean(model_outputs(model, x, 512).argmax(-1) == y))


def train_alone(build, seed, x, y, epochs, batch_size, dataset=None):
    keras.utils.set_random_seed(seed)
    model = build()
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    if dataset is None:
        model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    else:
        model.fit(dataset, epochs=epochs, verbose=0)
    return model


def distil(
    build,
    teacher,
    seed,
    train,
    epochs,
    batch_size,
    alpha=0.5,
    temperature=2.0,
    loss="kl",
    feature=False,
    callbacks=None,
    student=None,
):
    """Trains a fresh student from `teacher`; `train` is `(x, y)`, `(x,)` or a tf.data.Dataset.

    `teacher` may be a `TeacherCache` (then `train` must come from `cache.dataset`).
    """
    if student is None:
        keras.utils.set_random_seed(seed)
        student = build()
    matches = (
        [FeatureMatch("s_features", "t_features", loss="mse", weight=feature)] if feature else None
    )
    distiller = Distiller(student=student, teacher=teacher, feature_matches=matches)
    distiller.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        alpha=alpha,
        temperature=temperature,
        distillation_loss=loss,
    )
    if isinstance(train, tuple):
        distiller.fit(
            *train,
            epochs=epochs,
            batch_size=batch_size,
            shuffle=True,
            callbacks=callbacks,
            verbose=0,
        )
    else:
        distiller.fit(train, epochs=epochs, callbacks=callbacks, verbose=0)
    return student


def run_seed(setup, seed, grid, quick, patience=None, only_patience=False):
    x, y, x_test, y_test = setup["data"]
    epochs, batch = setup["epochs"], setup["batch_size"]
    build = setup["student"]
    results = {}

    def record(name, model):
        results[name] = accuracy(model, x_test, y_test)
        return model

    teacher = train_alone(setup["teacher"], 1000 + seed, x, y, epochs, batch)
    record("teacher", teacher)
    if patience:
        # Patient training (Beyer et al. 2022): the same student and recipe, more epochs.
        long_alone = record(
            f"student alone, {patience} epochs", train_alone(build, seed, x, y, patience, batch)
        )
        results[f"student alone, {patience} epochs (train accuracy)"] = accuracy(long_alone, x, y)
        # Where a transfer set exists, its long run replaces the low-alpha one (time budget).
        for alpha in (0.5,) if setup["extra"] is not None else (0.2, 0.5):
            record(
                f"KD a={alpha} T=2, {patience} epochs",
                distil(build, teacher, seed, (x, y), patience, batch, alpha, 2.0),
            )
        if setup["extra"] is not None:
            x_all, y_all = transfer.transfer_set(x, y, setup["extra"])
            transfer_ds = augment.function_matching_dataset(
                x_all, y_all, batch_size=batch, seed=seed
            )
            record(
                f"KD a=0.5 T=2 + transfer set, {patience} epochs",
                distil(build, teacher, seed, transfer_ds, patience, batch),
            )
    if only_patience:
        return results
    alone = record("student alone", train_alone(build, seed, x, y, epochs, batch))
    results["student alone (train accuracy)"] = accuracy(alone, x, y)
    for alpha, temperature in grid:
        record(
            f"KD a={alpha} T={temperature:g}",
            distil(build, teacher, seed, (x, y), epochs, batch, alpha, temperature),
        )
    augmented = augment.function_matching_dataset(
        x, y, setup["augmentation"], batch_size=batch, seed=seed
    )
    record(
        "student alone + augmentation",
        train_alone(build, seed, x, y, epochs, batch, dataset=augmented),
    )
    record(
        "KD a=0.5 T=2 + consistent augmentation",
        distil(build, teacher, seed, augmented, epochs, batch),
    )
    if not quick:
        mixed = augment.function_matching_dataset(
            x, None, setup["augmentation"], mixup_alpha=1.0, batch_size=batch, seed=seed
        )
        record(
            "function matching (augment + mixup, x-only, T=2)",
            distil(build, teacher, seed, mixed, epochs, batch, alpha=1.0),
        )
    if setup["extra"] is not None:
        x_all, y_all = transfer.transfer_set(x, y, setup["extra"])
        transfer_ds = augment.function_matching_dataset(x_all, y_all, batch_size=batch, seed=seed)
        record(
            "KD a=0.5 T=2 + transfer set", distil(build, teacher, seed, transfer_ds, epochs, batch)
        )
    record("DKD a=0.5 T=4", distil(build, teacher, seed, (x, y), epochs, batch, 0.5, 4.0, "dkd"))
    record(
        "KD a=0.5 T=2 + feature match (MSE, projection)",
        distil(build, teacher, seed, (x, y), epochs, batch, feature=1.0),
    )
    anneal = schedules.DistillationScheduler(temperature=schedules.linear(8.0, 1.0, epochs))
    record(
        "KD a=0.5, T annealed 8->1 (DistillationScheduler)",
        distil(build, teacher, seed, (x, y), epochs, batch, callbacks=[anneal]),
    )
    small = setup["small"]
    small_alone = record("small GAP-CNN alone", train_alone(small, seed, x, y, epochs, batch))
    results["small GAP-CNN alone (train accuracy)"] = accuracy(small_alone, x, y)
    record(
        "small GAP-CNN KD a=0.9 T=4", distil(small, teacher, seed, (x, y), epochs, batch, 0.9, 4.0)
    )
    return results


# ---------------------------------------------------------------- recipe mode


def validation_split(x, y, fraction=0.2, seed=0):
    """Fixed split of the labelled training data into (train, validation) parts."""
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(round((1 - fraction) * len(y)))
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


def recipe_setup(name, args):
    """Candidates `(alpha, T, transfer)`: transfer is None, "generated" or "mixup"."""
    setup = load(name, args)
    if name == "mnist1d":
        setup.update(
            candidates=[(0.5, 1.0, "generated"), (0.5, 2.0, "generated"), (0.9, 2.0, "generated")],
            max_epochs=args.max_epochs or 60,
            transfer_batch=256,
        )
    else:
        # No further digits exist: the transfer set is fixed mixup views of the labelled
        # images (4 per image), labelled by the teacher only.
        setup.update(
            candidates=[
                (0.1, 1.0, None),
                (0.3, 2.0, None),
                (0.5, 1.0, "mixup"),
                (0.5, 2.0, "mixup"),
            ],
            max_epochs=args.max_epochs or 150,
            transfer_batch=128,
        )
    return setup


def transfer_inputs(setup, kind, x_fit, seed):
    if kind == "generated":
        return setup["extra"]
    keras.utils.set_random_seed(seed)
    return np.asarray(augment.mixup(np.concatenate([x_fit] * 4)))


def run_recipe_seed(setup, seed, patience, tie_break):
    """Teacher, student alone and each candidate, all early-stopped on the same validation split."""
    x, y, x_test, y_test = setup["data"]
    (x_fit, y_fit), (x_val, y_val) = validation_split(x, y)
    batch, build, max_epochs = setup["batch_size"], setup["student"], setup["max_epochs"]
    results = {}

    def record(name, model, stopper=None):
        results[name] = accuracy(model, x_test, y_test)
        results[name + " (validation)"] = accuracy(model, x_val, y_val)
        if stopper is not None:
            results[name + " (epochs)"] = stopper.best_epoch
        return model

    teacher = record(
        "teacher", train_alone(setup["teacher"], 1000 + seed, x_fit, y_fit, setup["epochs"], batch)
    )
    keras.utils.set_random_seed(seed)
    alone = build()
    stopper = BestOnValidation(alone, x_val, y_val, patience, tie_break)
    alone.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    alone.fit(x_fit, y_fit, epochs=max_epochs, batch_size=batch, callbacks=[stopper], verbose=0)
    record("student alone", alone, stopper)
    for alpha, temperature, kind in setup["candidates"]:
        if kind is None:
            x_all, y_all = x_fit, y_fit
        else:
            x_all, y_all = transfer.transfer_set(
                x_fit, y_fit, transfer_inputs(setup, kind, x_fit, seed)
            )
        # The teacher runs once over these inputs; training reads its stored logits.
        cache = TeacherCache.build(teacher, x_all)
        batch_size = batch if kind is None else setup["transfer_batch"]
        keras.utils.set_random_seed(seed)
        student = build()
        stopper = BestOnValidation(student, x_val, y_val, patience, tie_break)
        distil(
            build,
            cache,
            seed,
            cache.dataset(x_all, y_all, batch_size=batch_size, seed=seed),
            max_epochs,
            batch,
            alpha,
            temperature,
            callbacks=[stopper],
            student=student,
        )
        record(
            candidate_name(setup, alpha, temperature, kind, len(x_all) - len(x_fit)),
            student,
            stopper,
        )
    return results


def candidate_name(setup, alpha, temperature, kind, size=None):
    if size is None:
        size = len(setup["extra"]) if kind == "generated" else None
    extra = {
        None: "",
        "generated": f" + transfer set ({size} generated)",
        "mixup": " + transfer set (4 mixup views per image)",
    }[kind]
    return f"KD a={alpha:g} T={temperature:g}{extra}"


def recipe_markdown(name, per_seed, table, setup):
    """Validation accuracy of every candidate, the selected one, and its test numbers."""
    names = ["student alone"] + [candidate_name(setup, *c) for c in setup["candidates"]]
    selected = max(names[1:], key=lambda n: table[n + " (validation)"]["mean"])
    lines = [
        f"### {name}: recipe mode ({len(per_seed)} seeds, selected on validation)",
        "",
        "| run | validation accuracy | epochs (best) | test accuracy | vs alone (paired) | R |",
        "|---|---|---|---|---|---|",
    ]
    teacher = table["teacher"]
    lines.append(
        f"| teacher | {100 * table['teacher (validation)']['mean']:.2f} | | "
        f"{100 * teacher['mean']:.2f} +- {100 * teacher['se']:.2f} | | |"
    )
    for run in names:
        val = table[run + " (validation)"]["mean"]
        epochs = table[run + " (epochs)"]["mean"]
        test = table[run]
        label = f"**{run} (selected)**" if run == selected else run
        cells = (
            f"| {label} | {100 * val:.2f} | {epochs:.0f} | "
            f"{100 * test['mean']:.2f} +- {100 * test['se']:.2f} |"
        )
        if run == "student alone":
            lines.append(cells + " | |")
            continue
        diff, se, recovery = gap_stats(per_seed, table, run, "student alone", "teacher")
        lines.append(cells + f" {100 * diff:+.2f} +- {100 * se:.2f} | {recovery:.2f} |")
    return "\n".join(lines), selected


def summarise(per_seed):
    names = list(per_seed[0])
    table = {}
    for name in names:
        values = np.array([r[name] for r in per_seed])
        se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
        table[name] = {"mean": float(values.mean()), "se": float(se), "values": values.tolist()}
    return table


def gap_stats(per_seed, table, name, alone, teacher):
    diff = np.array([r[name] - r[alone] for r in per_seed])
    se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    gap = table[teacher]["mean"] - table[alone]["mean"]
    recovery = (table[name]["mean"] - table[alone]["mean"]) / gap if gap > 0 else float("nan")
    return float(diff.mean()), float(se), float(recovery)


def markdown(name, per_seed, table):
    lines = [
        f"### {name} ({len(per_seed)} seeds)",
        "",
        "| recipe | test accuracy | vs alone (paired) | R |",
        "|---|---|---|---|",
    ]
    for recipe, stats in table.items():
        cell = f"{100 * stats['mean']:.2f} +- {100 * stats['se']:.2f}"
        if recipe.startswith("small"):
            alone = "small GAP-CNN alone"
        elif " epochs" in recipe and not recipe.startswith("student"):
            alone = "student alone, " + recipe.split(", ")[-1]
        else:
            alone = "student alone"
        if recipe in ("teacher", alone) or "train accuracy" in recipe or alone not in table:
            lines.append(f"| {recipe} | {cell} | | |")
            continue
        diff, se, recovery = gap_stats(per_seed, table, recipe, alone, "teacher")
        lines.append(
            f"| {recipe} | {cell} | {100 * diff:+.2f} +- {100 * se:.2f} | {recovery:.2f} |"
        )
    return "\n".join(lines)


def save(everything, path):
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(everything, handle, indent=1)


def main_recipe(args, everything, started):
    everything["recipe"] = True
    for name in args.datasets:
        setup = recipe_setup(name, args)
        patience = args.stop_patience or (10 if name == "mnist1d" else 20)
        tie_break = args.tie_break or ("earlier" if name == "mnist1d" else "later")
        everything["datasets"][name] = {
            "candidates": setup["candidates"],
            "patience": patience,
            "max_epochs": setup["max_epochs"],
            "tie_break": tie_break,
        }
        per_seed = []
        for seed in args.seeds:
            per_seed.append(run_recipe_seed(setup, seed, patience, tie_break))
            print(f"[{name}] seed {seed} done at {time.perf_counter() - started:.0f} s", flush=True)
            table = summarise(per_seed)
            everything["datasets"][name].update(per_seed=per_seed, summary=table)
            everything["seconds"] = time.perf_counter() - started
            save(everything, args.out)
        text, selected = recipe_markdown(name, per_seed, table, setup)
        everything["datasets"][name]["selected"] = selected
        save(everything, args.out)
        print(text, flush=True)
    print(f"wrote {args.out} ({everything['seconds']:.0f} s, {GENERATION})")


# ---------------------------------------------------------------- distill() mode


def cancer_teacher():
    inputs = keras.Input((30,))
    x = keras.layers.Dense(128, activation="relu")(inputs)
    x = keras.layers.Dense(128, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x), name="mlp_teacher")


def cancer_student():
    """A linear classifier (logistic regression) on the 30 standardised features."""
    inputs = keras.Input((30,))
    return keras.Model(inputs, keras.layers.Dense(2)(inputs), name="linear_student")


def breast_cancer():
    """scikit-learn's breast-cancer table (569 rows), standardised, split 50/50 at random."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    order = np.random.default_rng(0).permutation(len(bunch.target))
    x, y = bunch.data[order].astype("float32"), bunch.target[order].astype("int32")
    cut = len(y) // 2
    mean, std = x[:cut].mean(0), x[:cut].std(0) + 1e-6
    x = (x - mean) / std
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def canvas_digits():
    """Flattened 20x20 images: scikit-learn's digits, doubled to 16x16, at a random place.

    Each 8x8 digit is enlarged 2x (each pixel a 2x2 block) and put at a random
    offset (0 to 4 pixels down and right) on a 20x20 canvas, with Gaussian
    noise (std 0.05); the images are flattened to 400 values, as a table of
    pixels. 1,797 images, 1,000 labelled and 797 to test (split at random
    with seed 0).
    """
    (x_a, y_a), (x_b, y_b) = datasets.digits(train_fraction=0.5, seed=0)
    images, labels = np.concatenate([x_a, x_b])[..., 0], np.concatenate([y_a, y_b])
    rng = np.random.default_rng(0)
    big = np.kron(images, np.ones((2, 2), "float32"))
    canvas = rng.normal(0.0, 0.05, (len(big), 20, 20)).astype("float32")
    for index, (dy, dx) in enumerate(rng.integers(0, 5, size=(len(big), 2))):
        canvas[index, dy : dy + 16, dx : dx + 16] += big[index]
    x = canvas.reshape(len(big), 400)
    order = rng.permutation(len(labels))
    train, test = order[:1000], order[1000:]
    return (x[train], labels[train]), (x[test], labels[test])


def canvas_teacher():
    inputs = keras.Input((400,))
    x = keras.layers.Reshape((20, 20, 1))(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(x), name="cnn_teacher")


def canvas_student():
    inputs = keras.Input((400,))
    x = keras.layers.Dense(64, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(x), name="mlp_student")


SEQUENCE_LENGTH, SEQUENCE_CHANNELS, SEQUENCE_CLASSES = 16, 8, 4


def majority_sequences(num_examples=2000, seed=0):
    """Generated sequences whose class is the most frequent of 4 patterns among 16 steps.

    Four fixed random unit vectors in 8 channels are the patterns. A
    sequence of class `c` has 6 steps of pattern `c` and 10 steps of the
    other three (at most 4 each), in random order, plus Gaussian noise (std
    0.6). The class does not depend on where the steps are, which a
    transformer with pooling gets and an MLP on the flat sequence must learn.
    1,000 labelled sequences and 1,000 to test.
    """
    rng = np.random.default_rng(seed)
    patterns = rng.normal(size=(SEQUENCE_CLASSES, SEQUENCE_CHANNELS))
    patterns /= np.linalg.norm(patterns, axis=1, keepdims=True)
    labels = rng.integers(0, SEQUENCE_CLASSES, num_examples)
    x = np.empty((num_examples, SEQUENCE_LENGTH, SEQUENCE_CHANNELS), "float32")
    for index, label in enumerate(labels):
        others = [c for c in range(SEQUENCE_CLASSES) if c != label]
        steps = [label] * 7 + [c for c in others for _ in range(3)]
        x[index] = patterns[rng.permutation(steps)]
    x += rng.normal(0.0, 0.4, x.shape).astype("float32")
    half = num_examples // 2
    return (x[:half], labels[:half].astype("int32")), (x[half:], labels[half:].astype("int32"))


def sequence_teacher():
    """One transformer encoder block (2 heads, width 32) with learned positions, mean-pooled."""
    inputs = keras.Input((SEQUENCE_LENGTH, SEQUENCE_CHANNELS))
    x = keras.layers.Dense(32)(inputs)
    positions = keras.layers.Embedding(SEQUENCE_LENGTH, 32)(np.arange(SEQUENCE_LENGTH)[None])
    x = x + positions
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=16)(x, x)
    x = keras.layers.LayerNormalization()(x + attended)
    hidden = keras.layers.Dense(64, activation="relu")(x)
    x = keras.layers.LayerNormalization()(x + keras.layers.Dense(32)(hidden))
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(SEQUENCE_CLASSES)(x), name="transformer")


def sequence_student():
    inputs = keras.Input((SEQUENCE_LENGTH, SEQUENCE_CHANNELS))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(64, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(SEQUENCE_CLASSES)(x), name="mlp_student")


# Datasets that `--distill` runs once with the defaults fixed beforehand: never used to choose
# anything in distill() (its views, their number, the candidates).
HELD_OUT = ("canvas", "sequence")


def distill_setup(name, args):
    """Data, models and the budget of each dataset for `--distill`."""
    common = {"extra": None, "image_shape": None, "views": (args.views, args.views_per_example)}
    if name == "cancer":
        (x, y), (x_test, y_test) = breast_cancer()
        return dict(
            common,
            data=(x, y, x_test, y_test),
            teacher=cancer_teacher,
            student=cancer_student,
            teacher_epochs=50,
            batch_size=32,
            max_epochs=args.max_epochs or 150,
            patience=20,
        )
    if name in HELD_OUT:
        canvas = name == "canvas"
        (x, y), (x_test, y_test) = canvas_digits() if canvas else majority_sequences()
        return dict(
            common,
            data=(x, y, x_test, y_test),
            teacher=canvas_teacher if canvas else sequence_teacher,
            student=canvas_student if canvas else sequence_student,
            image_shape=(20, 20, 1) if canvas else None,
            teacher_epochs=40,
            batch_size=64,
            max_epochs=args.max_epochs or 40,
            patience=10,
        )
    setup = load(name, args)
    if args.no_unlabeled:
        setup["extra"] = None
    setup.update(
        teacher_epochs=setup["epochs"],
        max_epochs=args.max_epochs or (60 if name == "mnist1d" else 150),
        patience=10 if name == "mnist1d" else 20,
        views=(args.views, args.views_per_example),
        image_shape=None,
    )
    return setup


def _views_per_example(text):
    return text if text == "auto" else int(text)


def run_distill_seed(setup, seed):
    """Teacher, `distill()`, and the student alone and plain KD trained as `distill()` refits.

    Every model sees all labelled examples `(x, y)`: the teacher trains on them;
    `distill()` gets them with `validation_split=0.2` and refits its kept run
    on all of them; "student alone" and "plain KD" (the `Distiller` with its
    default loss, alpha 0.5 and T 4, labelled inputs only) train on all of
    them for the epoch count at which their early-stopped runs inside
    `distill()` were best on its validation split, from the same initial
    weights and seed.
    """
    x, y, x_test, y_test = setup["data"]
    batch = setup["batch_size"]
    teacher = train_alone(setup["teacher"], 1000 + seed, x, y, setup["teacher_epochs"], batch)
    keras.utils.set_random_seed(seed)
    student = setup["student"]()
    initial = student.get_weights()
    best, report = distill(
        teacher,
        student,
        x,
        y,
        validation_split=0.2,
        unlabeled=setup["extra"],
        test_data=(x_test, y_test),
        epochs=setup["max_epochs"],
        patience=setup["patience"],
        batch_size=batch,
        views=setup["views"][0],
        views_per_example=_views_per_example(setup["views"][1]),
        image_shape=setup["image_shape"],
        seed=seed,
        verbose=0,
    )

    def fresh():
        model = keras.models.clone_model(student)
        model.set_weights(initial)
        return model

    started = time.perf_counter()
    alone_epochs = report["student alone"]["best_epoch"]
    alone = train_alone(lambda: fresh(), seed, x, y, alone_epochs, batch)
    alone_seconds = time.perf_counter() - started
    plain_run = next(run for run in report.runs if run["stage"] == "plain")
    started = time.perf_counter()
    plain = fresh()
    keras.utils.set_random_seed(seed)
    distil(None, teacher, seed, (x, y), plain_run["best_epoch"], batch, 0.5, 4.0, student=plain)
    plain_seconds = time.perf_counter() - started
    results = {
        "teacher": accuracy(teacher, x_test, y_test),
        "student alone": accuracy(alone, x_test, y_test),
        "plain KD a=0.5 T=4": accuracy(plain, x_test, y_test),
        "distill()": accuracy(best, x_test, y_test),
        "distill() kept a distilled student": float(report.distilled),
        "distill() kept plain KD": float(report.kept == plain_run["name"]),
        "student alone, 80% split (distill()'s baseline)": report["student alone"]["test_accuracy"],
        "distill(), kept student before the refit": report[report.kept]["test_accuracy"],
        "epochs of student alone": alone_epochs,
        "epochs of plain KD": plain_run["best_epoch"],
        "epochs of distill() (all runs)": report.settings["total_epochs"],
        "seconds of student alone": alone_seconds,
        "seconds of plain KD": plain_seconds,
        "seconds of distill()": report.settings["seconds"],
    }
    return results, report.kept


def distill_markdown(name, per_seed, table):
    """Test accuracy, paired difference to the student alone and R (mean +- se over seeds)."""
    held_out = " (held out of tuning)" if name in HELD_OUT else ""
    lines = [
        f"### {name}{held_out} ({len(per_seed)} seeds): distill() vs the student alone vs plain KD",
        "",
        "| run | test accuracy | vs alone (paired) | vs plain KD (paired) | R of means | "
        "epochs | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    epochs = {
        "student alone": "epochs of student alone",
        "plain KD a=0.5 T=4": "epochs of plain KD",
        "distill()": "epochs of distill() (all runs)",
    }
    for run in ("teacher", "student alone", "plain KD a=0.5 T=4", "distill()"):
        cell = f"{100 * table[run]['mean']:.2f} +- {100 * table[run]['se']:.2f}"
        if run == "teacher":
            lines.append(f"| {run} | {cell} | | | | | |")
            continue
        cost = (
            f"{table[epochs[run]]['mean']:.0f} | "
            f"{table['seconds of ' + run.split(' a=')[0]]['mean']:.1f}"
        )
        if run == "student alone":
            lines.append(f"| {run} | {cell} | | | | {cost} |")
            continue
        diff, se, recovery = gap_stats(per_seed, table, run, "student alone", "teacher")
        versus = ""
        if run == "distill()":
            plain_diff, plain_se, _ = gap_stats(
                per_seed, table, run, "plain KD a=0.5 T=4", "teacher"
            )
            versus = f"{100 * plain_diff:+.2f} +- {100 * plain_se:.2f}"
        lines.append(
            f"| {run} | {cell} | {100 * diff:+.2f} +- {100 * se:.2f} | {versus} | "
            f"{recovery:.2f} | {cost} |"
        )
    kept = table["distill() kept a distilled student"]["mean"]
    plain = table["distill() kept plain KD"]["mean"]
    lines.append("")
    lines.append(
        f"distill() kept a distilled student in {kept * len(per_seed):.0f} of "
        f"{len(per_seed)} seeds (plain KD in {plain * len(per_seed):.0f}). Epochs: the refit's "
        "for the student alone and plain KD, every run's and the refit's for distill()."
    )
    return "\n".join(lines)


def main_distill(args, everything, started):
    everything["distill"] = True
    for name in args.datasets:
        setup = distill_setup(name, args)
        per_seed, kept = [], []
        for seed in args.seeds:
            results, choice = run_distill_seed(setup, seed)
            per_seed.append(results)
            kept.append(choice)
            print(
                f"[{name}] seed {seed} done at {time.perf_counter() - started:.0f} s "
                f"(kept: {choice})",
                flush=True,
            )
            table = summarise(per_seed)
            everything["datasets"][name] = {
                "per_seed": per_seed,
                "summary": table,
                "kept": kept,
                "max_epochs": setup["max_epochs"],
                "patience": setup["patience"],
            }
            everything["seconds"] = time.perf_counter() - started
            save(everything, args.out)
        print(distill_markdown(name, per_seed, table), flush=True)
    print(f"wrote {args.out} ({everything['seconds']:.0f} s, {GENERATION})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=None,
        choices=["mnist1d", "digits", "cancer", "canvas", "sequence"],
        help="defaults to mnist1d and digits (and cancer, canvas, sequence with --distill)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs of every run; defaults to 20 on MNIST-1D, 30 on digits",
    )
    parser.add_argument(
        "--transfer-size",
        type=int,
        default=None,
        help="unlabeled MNIST-1D examples in the transfer set "
        "(defaults to 4000; 40000 with --recipe)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 seeds, 8 epochs, no mixup run: checks that everything runs",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=None,
        help="also train the student alone and with KD for this many epochs",
    )
    parser.add_argument(
        "--only-patience",
        action="store_true",
        help="with --patience: only the teacher and the long runs",
    )
    parser.add_argument(
        "--recipe",
        action="store_true",
        help="only the recommended recipe: candidates selected on a validation "
        "split, early stopping for the student alone and every candidate",
    )
    parser.add_argument(
        "--distill",
        action="store_true",
        help="only keras_distill.distill() vs the student alone vs plain KD",
    )
    parser.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="with --recipe: epoch cap (60 on MNIST-1D, 150 on digits)",
    )
    parser.add_argument(
        "--stop-patience",
        type=int,
        default=None,
        help="with --recipe: epochs without a better validation accuracy "
        "before stopping (10 on MNIST-1D, 20 on digits)",
    )
    parser.add_argument(
        "--tie-break",
        choices=["earlier", "later"],
        default=None,
        help="with --recipe: which epoch wins a tie in validation accuracy "
        "(earlier on MNIST-1D, later on digits)",
    )
    parser.add_argument(
        "--views",
        default="auto",
        choices=["auto", "munge", "mixup", "signal", "image"],
        help="with --distill: distill()'s generated views where there is no unlabeled set",
    )
    parser.add_argument(
        "--views-per-example",
        default="auto",
        help="with --distill: generated views per labelled input (an integer, or auto)",
    )
    parser.add_argument(
        "--no-unlabeled",
        action="store_true",
        help="with --distill: no unlabeled MNIST-1D signals; distill() generates views",
    )
    parser.add_argument("--out", default="outputs/quality.json")
    args = parser.parse_args(argv)
    if args.datasets is None:
        more = ["cancer", *HELD_OUT] if args.distill else []
        args.datasets = ["mnist1d", "digits", *more]
    only_distill = {"cancer", *HELD_OUT}.intersection(args.datasets)
    if only_distill and not args.distill:
        parser.error(f"--datasets {' '.join(sorted(only_distill))} needs --distill")
    if args.transfer_size is None:
        args.transfer_size = 40000 if args.recipe or args.distill else 4000
    if args.quick:
        args.seeds, args.epochs = args.seeds[:2], 8
        if args.recipe or args.distill:
            args.epochs, args.max_epochs = None, 4
            args.transfer_size = min(args.transfer_size, 4000)
    grid = [(0.5, 2.0), (0.5, 4.0), (0.9, 2.0), (0.9, 4.0)]
    started = time.perf_counter()
    everything = {
        "generation": GENERATION,
        "seeds": args.seeds,
        "epochs": args.epochs,
        "command": "python benchmarks/quality.py " + " ".join(argv or sys.argv[1:]),
        "datasets": {},
    }
    if args.recipe:
        return main_recipe(args, everything, started)
    if args.distill:
        return main_distill(args, everything, started)
    for name in args.datasets:
        setup = load(name, args)
        per_seed = []
        for seed in args.seeds:
            per_seed.append(
                run_seed(setup, seed, grid, args.quick, args.patience, args.only_patience)
            )
            print(f"[{name}] seed {seed} done at {time.perf_counter() - started:.0f} s", flush=True)
            table = summarise(per_seed)
            everything["datasets"][name] = {"per_seed": per_seed, "summary": table}
            everything["seconds"] = time.perf_counter() - started
            save(everything, args.out)  # after every seed, so a stopped run keeps its results
        print(markdown(name, per_seed, table), flush=True)
    print(f"wrote {args.out} ({everything['seconds']:.0f} s, {GENERATION})")


if __name__ == "__main__":
    main()
