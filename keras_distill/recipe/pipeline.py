"""`distill()`: the measured recipe in one call, never below the student alone on validation."""

import dataclasses
import time

import numpy as np

from keras_distill import _checks
from keras_distill import _trace_once
from keras_distill._clone import clone_with_weights
from keras_distill._keras import GENERATION
from keras_distill._keras import keras
from keras_distill._options import TrainingOptions
from keras_distill.data import transfer
from keras_distill.distiller import Distiller
from keras_distill.recipe import inputs
from keras_distill.recipe.report import BASELINE
from keras_distill.recipe.report import RecipeReport
from keras_distill.recipe.stopping import BestOnValidation
from keras_distill.recipe.stopping import accuracy
from keras_distill.teachers.cache import TeacherCache

DEFAULT_CANDIDATES = ((0.5, 1.0), (0.5, 2.0), (0.9, 2.0))
DEFAULT_VALIDATION_SPLIT = 0.2
# The candidate every run includes: the Distiller with its default loss, labelled inputs only.
PLAIN_KD = "plain KD"
# Train accuracy less than this above validation accuracy: the student alone may underfit.
UNDERFIT_GAP = 0.02


def distill(
    teacher,
    student,
    x,
    y=None,
    validation_data=None,
    validation_split=None,
    unlabeled=None,
    test_data=None,
    epochs=60,
    search_epochs=None,
    patience=10,
    candidates=DEFAULT_CANDIDATES,
    views="auto",
    views_per_example="auto",
    image_shape=None,
    refit=True,
    batch_size=128,
    transfer_batch_size=256,
    learning_rate=2e-3,
    teacher_from_logits=True,
    seed=0,
    verbose=1,
):
    """Distils `teacher` into a copy of `student`, and keeps it only if it beats the student alone.

    The recipe measured in `docs/quality.md`, end to end:

    1. A validation part is set aside (`validation_data`, or a seeded random
       `validation_split` of `(x, y)`). It decides everything below; the
       test data, if given, is only reported.
    2. Baseline: a copy of `student` trains alone on the labels
       (cross-entropy, Adam), with early stopping on validation accuracy
       (`patience` epochs, at most `epochs`), best weights restored.
    3. Plain KD: a copy of `student` trains with the `Distiller`'s default
       loss (`alpha=0.5`, `T=4`) on the labelled inputs only, with the same
       early stopping: the two-line path, always among the candidates.
    4. Transfer set: the labelled inputs plus `unlabeled` inputs (label
       `-1`: distillation term only). Without `unlabeled`, `views_per_example`
       generated views of every labelled input take their place (`views`:
       by default image views, random translations and noise, for images
       of at least 16x16 pixels, flat ones declared with `image_shape`
       included; signal views for `(n, length, channels)` inputs; MUNGE,
       `data.transfer.munge`, for everything else, smaller images
       included). The teacher labels the transfer set once
       (`TeacherCache`), so teacher and student see the same views; no
       teacher runs while the students train.
    5. Search: a copy of `student` per `(alpha, temperature)` candidate
       trains with `L = (1 - alpha) * H(y, s) + alpha * T^2 * KL(t/T || s/T)`
       for `search_epochs` with the same early stopping. The candidate with
       the best validation accuracy (the first on a tie) continues up to
       `epochs` in all.
    6. Choice: the better of plain KD and the searched candidate (plain KD
       on a tie) is kept only if its validation accuracy is strictly higher
       than the student alone's; otherwise the student alone is kept and
       the report says so. The kept student is never worse on validation
       than the student alone or plain KD trained here.
    7. Refit (`refit=True`): the kept run's settings train a fresh copy of
       `student` on every labelled example (`x`, and the validation
       examples) for the epoch count at which the kept run was best on
       validation, with the transfer set rebuilt from all of them. The
       refit student is returned; `report.refit` says which run was refit,
       on how many examples, for how many epochs. Its validation accuracy
       is no longer a held-out measure (it trained on those examples); the
       report's validation accuracies are those of the runs that chose.

    Every student starts from the weights `student` has now (the copies are
    paired); `student` itself is not changed. Epoch budget: the student
    alone and plain KD train at most `epochs` each, the search at most
    `len(candidates) * search_epochs + epochs - search_epochs` epochs in
    all, the refit at most `epochs`; `patience` ends each run earlier.
    `report.settings` gives `total_epochs` (every run and the refit) and
    `seconds` (the wall time of the whole call).

    Args:
        teacher: Trained `keras.Model` (outputs logits, or probabilities with
            `teacher_from_logits=False`).
        student: Built `keras.Model` with the teacher's number of classes.
        x: Labelled inputs (NumPy array) or a finite, batched
            `tf.data.Dataset` of `(x, y)`.
        y: Class indices `(n,)` or one-hot rows; `None` when `x` is a
            dataset.
        validation_data: `(x_val, y_val)` or a dataset of `(x, y)`.
            Defaults to `None` (use `validation_split`).
        validation_split: Fraction of `(x, y)` set aside, at random with
            `seed`, when `validation_data` is not given. Defaults to `0.2`.
        unlabeled: Inputs without labels (array, or a dataset of `x`) for
            the teacher to label. Around ten times the labelled set worked
            best in `docs/quality.md`. Defaults to `None` (generated views).
        test_data: `(x_test, y_test)` or a dataset, only reported. Defaults
            to `None`.
        epochs: Most epochs of any one student. Defaults to `60`.
        search_epochs: Epochs of each candidate before the choice of
            `alpha` and `temperature`. Defaults to `None`
            (`max(1, epochs // 4)`; `epochs` for a single candidate).
        patience: Epochs without a better validation accuracy before a
            student stops. Defaults to `10`.
        candidates: `(alpha, temperature)` pairs to try. Defaults to
            `((0.5, 1.0), (0.5, 2.0), (0.9, 2.0))`.
        views: Generated views when `unlabeled` is `None`: `"munge"`
            (features drawn near each input's nearest neighbour),
            `"signal"` (shift, scale, noise), `"mixup"`, `"image"`
            (translation and noise, `data.augment.image_views`), or
            `"auto"`: image views for images of at least 16x16 pixels
            (`(n, height, width, channels)` inputs, or flat ones with
            `image_shape`), signal views for `(n, length, channels)`
            inputs, MUNGE otherwise (see `inputs.view_kind`). Defaults to
            `"auto"`.
        views_per_example: Generated views per labelled input, or
            `"auto"`: enough for about 25,000 generated inputs, at least 4
            and at most 32 per labelled input (on scikit-learn digits, 4
            views gave no gain, 16 recovered 45% of the teacher's lead and
            32 recovered 58%; see `docs/quality.md`). Defaults to `"auto"`.
        image_shape: `(height, width)` or `(height, width, channels)` when
            the inputs are flattened images, e.g. `(28, 28, 1)` for rows of
            784 pixels: they then get image views. Defaults to `None`.
        refit: Train the kept run's settings again on all labelled examples
            for its best epoch count, and return that student (step 7).
            `False` returns the kept student as trained on `x` alone.
            Defaults to `True`.
        batch_size: Batch size of the student alone and of plain KD.
            Defaults to `128`.
        transfer_batch_size: Batch size on the transfer set. Defaults to
            `256`.
        learning_rate: Adam's learning rate for every student. Defaults to
            `2e-3`.
        teacher_from_logits: Whether the teacher returns logits (`False`:
            probabilities, as in the `Distiller`). Defaults to `True`.
        seed: Seed of the split, the generated views, the initial order of
            batches and of every training run. Defaults to `0`.
        verbose: `0` silent, `1` one line per phase, `2` also Keras' one
            line per epoch. Defaults to `1`.

    Returns:
        `(best, report)`: `best` is a new, uncompiled `keras.Model` of the
        student's architecture (no teacher inside); `report` is a
        `RecipeReport`.

    Example:
        ```python
        best, report = keras_distill.distill(
            teacher, student, x_train, y_train, unlabeled=x_unlabeled,
            test_data=(x_test, y_test))
        print(report)
        best.save("student.keras")
        ```

    References:
        Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
        Network", 2015 (transfer set). https://arxiv.org/abs/1503.02531
        Bucilua, Caruana & Niculescu-Mizil, "Model Compression", KDD 2006
        (generated transfer sets, MUNGE). https://doi.org/10.1145/1150402.1150464
    """
    _checks.check_model("teacher", teacher)
    _checks.check_model("student", student)
    _checks.check_distinct(student, teacher)
    inputs.check_one_row_per_example("teacher", teacher)
    inputs.check_one_row_per_example("student", student)
    _checks.check_class_counts(student.output_shape, teacher.output_shape)
    settings = _check_settings(
        epochs=epochs,
        search_epochs=search_epochs,
        patience=patience,
        candidates=candidates,
        views=views,
        views_per_example=views_per_example,
        batch_size=batch_size,
        transfer_batch_size=transfer_batch_size,
        learning_rate=learning_rate,
        teacher_from_logits=teacher_from_logits,
        seed=seed,
        verbose=verbose,
        refit=refit,
    )
    if validation_data is not None and validation_split is not None:
        raise ValueError(
            "Pass either `validation_data` or `validation_split`, not both. "
            f"Received: validation_split={validation_split!r} with validation_data"
        )
    x, y = inputs.labelled_arrays("x", x, y)
    if validation_data is None:
        fraction = _checks.check_fraction(
            "validation_split",
            DEFAULT_VALIDATION_SPLIT if validation_split is None else validation_split,
        )
        (x_fit, y_fit), (x_val, y_val) = inputs.split(x, y, fraction, settings.training.seed)
        labelled = (x, y)
    else:
        (x_fit, y_fit), (x_val, y_val) = (x, y), inputs.pair("validation_data", validation_data)
        labelled = (np.concatenate([x, x_val]), np.concatenate([y, y_val]))
    test = None if test_data is None else inputs.pair("test_data", test_data)
    extra = None if unlabeled is None else inputs.input_array("unlabeled", unlabeled)
    num_classes = student.output_shape[-1]
    for name, labels in (("y", y_fit), ("validation_data", y_val)) + (
        (("test_data", test[1]),) if test else ()
    ):
        _check_label_range(name, labels, num_classes)
    for name, values in (
        ("validation_data", x_val),
        ("test_data", test and test[0]),
        ("unlabeled", extra),
    ):
        if values is not None and values.shape[1:] != x_fit.shape[1:]:
            raise ValueError(
                f"`{name}` must have the example shape of `x` {x_fit.shape[1:]}. "
                f"Received: {name} inputs of shape {values.shape}"
            )
    if image_shape is not None or views == "image":
        settings = dataclasses.replace(
            settings, image_shape=_checks.check_image_shape(image_shape, x_fit.shape[1:])
        )
    return _Recipe(
        teacher, student, settings, (x_fit, y_fit), (x_val, y_val), test, extra, labelled
    ).run()


class _Recipe:
    """The state of one `distill()` run: data, settings, progress and trained students."""

    def __init__(self, teacher, student, settings, fit, validation, test, extra, labelled):
        self.teacher, self.student, self.settings = teacher, student, settings
        self.fit_data, self.validation, self.test, self.extra = fit, validation, test, extra
        self.labelled = labelled
        self.initial_weights = student.get_weights()
        self.runs = []
        self.started = time.perf_counter()
        self.num_phases = 7 if settings.refit else 6

    def run(self):
        s = self.settings
        x_fit, y_fit = self.fit_data
        x_val, y_val = self.validation
        self.say(
            f"distill: {len(y_fit):,} labelled examples to train on, {len(y_val):,} to "
            f"validate, {len(s.candidates)} (alpha, T) candidate(s), {GENERATION}"
        )
        teacher = {
            "validation_accuracy": accuracy(self.teacher, x_val, y_val),
            "test_accuracy": self.test_accuracy(self.teacher),
        }
        self.phase(1, f"teacher: validation accuracy {_pct(teacher['validation_accuracy'])}")

        models = {BASELINE: self.train_baseline()}
        self.phase(2, f"student alone: {self.summary(self.runs[-1])}")
        plain = self.train_plain()
        models[self.runs[-1]["name"]] = plain
        self.phase(3, f"{self.runs[-1]['name']} (labelled inputs): {self.summary(self.runs[-1])}")

        x_all, y_all, description = self.transfer_set(*self.fit_data)
        cache = self.label(x_all)
        self.phase(4, f"the teacher labelled {len(x_all):,} inputs once ({description})")

        searched = [
            self.train_candidate(alpha, temperature, cache, x_all, y_all)
            for alpha, temperature in s.candidates
        ]
        scores = ", ".join(f"a={a:g} T={t:g}: {_pct(st.best)}" for (a, t), _, st, _ in searched)
        self.phase(5, f"search ({s.search_epochs} epochs each): {scores}")
        final = self.finish_search(searched)
        models[self.runs[-1]["name"]] = final
        self.phase(6, f"{self.runs[-1]['name']}: {self.summary(self.runs[-1])}")

        baseline_run, plain_run, final_run = self.runs[0], self.runs[1], self.runs[-1]
        kept, reason = choose_student(baseline_run, [plain_run, final_run])
        settings = self.report_settings(description, len(x_all))
        report = RecipeReport(self.runs, teacher, kept, reason, settings)
        report.baseline_model = self.copy(models[BASELINE])
        best_distilled = max([plain_run, final_run], key=lambda r: r["validation_accuracy"])
        report.distilled_model = self.copy(models[best_distilled["name"]])
        report.chosen_model = self.copy(models[kept])
        best = report.chosen_model
        if s.refit:
            best, report.refit = self.refit(report[kept])
            self.phase(7, self.refit_summary(report.refit))
        report.settings["total_epochs"] = sum(r["epochs"] for r in self.runs) + (
            report.refit["epochs"] if report.refit else 0
        )
        report.settings["seconds"] = round(time.perf_counter() - self.started, 1)
        self.say(f"kept: {kept}. {reason} ({self.elapsed()})")
        return self.copy(best), report

    def train_baseline(self, data=None, epochs=None):
        """The student alone: cross-entropy on the labels, early-stopped on validation.

        With `epochs`, trains exactly that many epochs on `data` instead (the refit).
        """
        s = self.settings
        baseline = self.new_student()
        baseline.compile(
            optimizer=s.training.new_optimizer(),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        stopper = None if epochs else self.stopper(baseline)
        _trace_once.prepare_fit(baseline, *(data or self.fit_data))
        keras.utils.set_random_seed(s.training.seed)
        baseline.fit(
            *(data or self.fit_data),
            batch_size=s.training.batch_size,
            epochs=epochs or s.training.epochs,
            shuffle=True,
            callbacks=[stopper] if stopper else [],
            verbose=self.fit_verbose,
        )
        if stopper:
            self.record(BASELINE, None, None, baseline, stopper, "baseline")
            self.runs[-1]["train_accuracy"] = accuracy(baseline, *self.fit_data)
        return baseline

    def train_plain(self, data=None, epochs=None):
        """Plain KD: the `Distiller`'s default loss on the labelled inputs only.

        Early-stopped on validation up to `epochs` like the student alone; with
        `epochs`, trains exactly that many on `data` instead (the refit).
        """
        x, y = data or self.fit_data
        cache = self.label(x)
        student = self.new_student()
        distiller = Distiller(student=student, teacher=cache)
        distiller.compile(optimizer=self.settings.training.new_optimizer())
        stopper = None if epochs else self.stopper(student)
        dataset = cache.dataset(
            x, y, batch_size=self.settings.training.batch_size, seed=self.settings.training.seed
        )
        keras.utils.set_random_seed(self.settings.training.seed)
        distiller.fit(
            dataset,
            epochs=epochs or self.settings.training.epochs,
            callbacks=[stopper] if stopper else [],
            shuffle=False,
            verbose=self.fit_verbose,
        )
        if stopper:
            alpha, temperature = distiller.alpha, distiller.temperature
            name = f"{PLAIN_KD} a={alpha:g} T={temperature:g}"
            self.record(name, alpha, temperature, student, stopper, "plain")
        return student

    def finish_search(self, searched):
        """Continues the best candidate (the first on a tie) up to `epochs`; returns its student."""
        (alpha, temperature), distiller, stopper, dataset = max(
            searched, key=lambda item: item[2].best
        )
        remaining = self.settings.training.epochs - stopper.epochs
        if remaining > 0 and not stopper.exhausted:
            keras.utils.set_random_seed(self.settings.training.seed + 1)
            distiller.fit(
                dataset,
                epochs=remaining,
                callbacks=[stopper],
                shuffle=False,
                verbose=self.fit_verbose,
            )
        for (a, t), other, other_stopper, _ in searched:
            if other is not distiller:
                self.record(_candidate_name(a, t), a, t, other.student, other_stopper, "search")
        self.record(
            _candidate_name(alpha, temperature),
            alpha,
            temperature,
            distiller.student,
            stopper,
            "final",
        )
        return distiller.student

    def refit(self, run):
        """Trains the kept run's settings again on every labelled example, for its best epochs.

        Returns `(student, refit record)`. No example is left to stop on, so the
        epoch count is the one the kept run reached its best validation accuracy at.
        """
        epochs = run["best_epoch"]
        x, y = self.labelled
        num_transfer = len(x)
        if run["stage"] == "baseline":
            model = self.train_baseline((x, y), epochs)
        elif run["stage"] == "plain":
            model = self.train_plain((x, y), epochs)
        else:
            x_all, y_all, _ = self.transfer_set(x, y)
            num_transfer = len(x_all)
            cache = self.label(x_all)
            _, distiller, _, _ = self.train_candidate(
                run["alpha"], run["temperature"], cache, x_all, y_all, epochs
            )
            model = distiller.student
        record = {
            "run": run["name"],
            "num_examples": int(len(y)),
            "num_transfer": int(num_transfer),
            "epochs": int(epochs),
            "test_accuracy": self.test_accuracy(model),
        }
        return model, record

    def transfer_set(self, x, y):
        """`(inputs, labels, description)`: `x` and the unlabeled or generated inputs."""
        s = self.settings
        if self.extra is not None:
            extra, description = self.extra, f"transfer set: {len(self.extra):,} unlabeled inputs"
        else:
            kind = inputs.view_kind(s.views, x, s.image_shape)
            copies = inputs.views_per_example(s.views_per_example, len(self.fit_data[0]))
            extra = inputs.generated_views(x, kind, copies, s.training.seed, s.image_shape)
            description = (
                f"transfer set: {len(extra):,} generated {kind} views ({copies} per labelled input)"
            )
        x_all, y_all = transfer.transfer_set(x, y, extra)
        return x_all, y_all, description + " labelled by the teacher, plus the labelled inputs"

    def label(self, x):
        """The teacher's outputs on `x`, computed once."""
        return TeacherCache.build(
            self.teacher, x, teacher_from_logits=self.settings.teacher_from_logits
        )

    def train_candidate(self, alpha, temperature, cache, x_all, y_all, epochs=None):
        """Distils a fresh student with one `(alpha, temperature)` candidate for `search_epochs`.

        With `epochs`, trains exactly that many epochs without early stopping (the refit).
        """
        s = self.settings
        student = self.new_student()
        distiller = Distiller(student=student, teacher=cache)
        distiller.compile(
            optimizer=s.training.new_optimizer(),
            alpha=alpha,
            temperature=temperature,
        )
        stopper = self.stopper(student)
        dataset = cache.dataset(
            x_all, y_all, batch_size=s.transfer_batch_size, seed=s.training.seed
        )
        keras.utils.set_random_seed(s.training.seed)
        # The cache's dataset shuffles itself; `shuffle=False` only silences Keras' notice.
        distiller.fit(
            dataset,
            epochs=epochs or s.search_epochs,
            callbacks=[] if epochs else [stopper],
            shuffle=False,
            verbose=self.fit_verbose,
        )
        return (alpha, temperature), distiller, stopper, dataset

    def record(self, name, alpha, temperature, model, stopper, stage):
        x_val, y_val = self.validation
        self.runs.append(
            {
                "name": name,
                "alpha": alpha,
                "temperature": temperature,
                "stage": stage,
                "epochs": stopper.epochs,
                "best_epoch": stopper.best_epoch,
                "validation_accuracy": accuracy(model, x_val, y_val),
                "test_accuracy": self.test_accuracy(model),
                "curve": [float(v) for v in stopper.curve],
            }
        )

    def new_student(self):
        return clone_with_weights(self.student, "student", self.initial_weights)

    def copy(self, model):
        return clone_with_weights(model, "student")

    def stopper(self, model):
        return BestOnValidation(model, *self.validation, patience=self.settings.patience)

    def test_accuracy(self, model):
        return None if self.test is None else accuracy(model, *self.test)

    @property
    def fit_verbose(self):
        return self.settings.training.verbose

    def report_settings(self, description, num_transfer):
        s = self.settings
        return {
            "num_fit": int(len(self.fit_data[1])),
            "num_validation": int(len(self.validation[1])),
            "num_test": None if self.test is None else int(len(self.test[1])),
            "num_transfer": int(num_transfer),
            "transfer_description": description,
            "epochs": s.training.epochs,
            "search_epochs": s.search_epochs,
            "patience": s.patience,
            "batch_size": s.training.batch_size,
            "transfer_batch_size": s.transfer_batch_size,
            "learning_rate": s.training.learning_rate,
            "seed": s.training.seed,
            "candidates": [list(pair) for pair in s.candidates],
            "image_shape": None if s.image_shape is None else list(s.image_shape),
            "refit": s.refit,
            "generation": GENERATION,
        }

    def summary(self, run):
        return (
            f"{run['epochs']} epochs, best validation accuracy "
            f"{_pct(run['validation_accuracy'])} at epoch {run['best_epoch']}"
        )

    def refit_summary(self, refit):
        return (
            f"refit: {refit['run']} trained again on all {refit['num_examples']:,} labelled "
            f"examples for {refit['epochs']} epochs"
        )

    def phase(self, number, text):
        self.say(f"[{number}/{self.num_phases}] {text} ({self.elapsed()})")

    def say(self, text):
        if self.settings.verbose:
            print(text, flush=True)

    def elapsed(self):
        return f"{time.perf_counter() - self.started:.0f} s"


def choose_student(baseline, distilled):
    """`(kept run's name, reason)`: the best distilled run only if strictly better on validation.

    Args:
        baseline: The student alone's run (with `train_accuracy`).
        distilled: The distilled runs (plain KD first), each with
            `validation_accuracy`; the first of equal accuracy wins.
    """
    best = max(distilled, key=lambda run: run["validation_accuracy"])
    gain = best["validation_accuracy"] - baseline["validation_accuracy"]
    if gain > 0:
        return best["name"], (
            f"Its validation accuracy {_pct(best['validation_accuracy'])} is "
            f"{100 * gain:.2f} points above the student alone "
            f"({_pct(baseline['validation_accuracy'])}) and the best of the distilled students."
        )
    reason = (
        "Distillation did not help here: the best distilled student "
        f"({best['name']}, {_pct(best['validation_accuracy'])}) is not above the "
        f"student alone ({_pct(baseline['validation_accuracy'])}) on validation, so the "
        "student alone is returned."
    )
    fit_gap = baseline["train_accuracy"] - baseline["validation_accuracy"]
    if fit_gap < UNDERFIT_GAP:
        reason += (
            f" The student alone fits its training data little better than validation "
            f"({_pct(baseline['train_accuracy'])} vs {_pct(baseline['validation_accuracy'])}):"
            " it may underfit, and students that underfit lost accuracy with distillation in "
            "docs/quality.md; a larger student may gain more."
        )
    return BASELINE, reason


@dataclasses.dataclass(frozen=True)
class _RecipeSettings:
    """The checked settings of one `distill()` run.

    `training` holds what every student's training shares (epochs, batch size,
    learning rate, seed, and Keras's own verbosity); `verbose` is the
    recipe's (`1`: one line per phase).
    """

    training: TrainingOptions
    search_epochs: int
    patience: int
    candidates: tuple
    views: str
    views_per_example: object
    transfer_batch_size: int
    teacher_from_logits: bool
    verbose: int
    refit: bool
    image_shape: tuple = None


def _check_settings(
    epochs,
    search_epochs,
    patience,
    candidates,
    views,
    views_per_example,
    batch_size,
    transfer_batch_size,
    learning_rate,
    teacher_from_logits,
    seed,
    verbose,
    refit,
):
    """The keyword arguments of `distill()`, checked, with `search_epochs` filled in."""
    _checks.check_choice("verbose", verbose, (0, 1, 2))
    training = TrainingOptions(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=_checks.check_int("seed", seed, minimum=0),
        verbose=2 if verbose == 2 else 0,
    )
    patience = _checks.check_int("patience", patience)
    transfer_batch_size = _checks.check_int("transfer_batch_size", transfer_batch_size)
    if not (isinstance(views_per_example, str) and views_per_example == "auto"):
        try:
            views_per_example = _checks.check_int("views_per_example", views_per_example)
        except ValueError:
            raise ValueError(
                '`views_per_example` must be an integer >= 1 or "auto". '
                f"Received: views_per_example={views_per_example!r}"
            ) from None
    _checks.check_choice("views", views, inputs.VIEW_KINDS)
    _checks.check_teacher_from_logits(teacher_from_logits, None)
    candidates = _check_candidates(candidates)
    if search_epochs is None:
        several = len(candidates) > 1
        search_epochs = max(1, training.epochs // 4) if several else training.epochs
    search_epochs = _checks.check_int("search_epochs", search_epochs)
    if search_epochs > training.epochs:
        raise ValueError(
            f"`search_epochs` must not exceed `epochs` ({training.epochs}). "
            f"Received: search_epochs={search_epochs}"
        )
    return _RecipeSettings(
        training=training,
        search_epochs=search_epochs,
        patience=patience,
        candidates=tuple(candidates),
        views=views,
        views_per_example=views_per_example,
        transfer_batch_size=transfer_batch_size,
        teacher_from_logits=teacher_from_logits,
        verbose=verbose,
        refit=_checks.check_bool("refit", refit),
    )


def _check_candidates(candidates):
    try:
        pairs = [tuple(pair) for pair in candidates]
        valid = bool(pairs) and all(len(pair) == 2 for pair in pairs)
    except TypeError:
        valid = False
    if valid:
        try:
            return [(_checks.check_alpha(a), _checks.check_temperature(t)) for a, t in pairs]
        except ValueError:
            pass
    raise ValueError(
        "`candidates` must be a non-empty list of (alpha, temperature) pairs, alpha in [0, 1] "
        f"and temperature > 0. Received: candidates={candidates!r}"
    )


def _check_label_range(name, labels, num_classes):
    if labels.size and labels.max() >= num_classes:
        raise ValueError(
            f"The labels of `{name}` must be class indices in [0, {num_classes - 1}]. "
            f"Received: labels up to {int(labels.max())}"
        )


def _candidate_name(alpha, temperature):
    return f"distilled a={alpha:g} T={temperature:g}"


def _pct(value):
    return f"{100.0 * value:.2f}%"
