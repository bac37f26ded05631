"""`RecipeReport`: what `distill()` tried, what it kept and why."""

import json

from keras_distill.evaluation import plots
from keras_distill.evaluation._tables import JsonReport
from keras_distill.evaluation._tables import markdown_table

BASELINE = "student alone"


class RecipeReport(JsonReport):
    """The record of one `distill()` run.

    `print(report)` shows a table: the teacher, the student trained alone,
    every distillation candidate (its `alpha`, temperature, epochs and best
    epoch, validation accuracy and, when test data was given, test
    accuracy), then which student was kept and why.

    Args:
        runs: One dict per trained student: `name`, `alpha`, `temperature`
            (`None` for the student alone), `epochs` (trained), `best_epoch`,
            `validation_accuracy`, `test_accuracy` (or `None`), `curve`
            (validation accuracy after each epoch) and `stage`
            (`"baseline"`, `"plain"`, `"search"` or `"final"`); the student
            alone's run also has `train_accuracy`.
        teacher: `{"validation_accuracy", "test_accuracy"}` of the teacher.
        kept: Name of the run whose student was returned.
        reason: One sentence: why that student.
        settings: How the recipe ran (sizes, epochs, seed, Keras generation,
            and once it finished `total_epochs`, every run's epochs and the
            refit's, and `seconds`, the wall time of the call).
        refit: `None`, or the refit of the kept run on all labelled
            examples: `run` (its name), `num_examples` (labelled examples),
            `num_transfer` (inputs it trained on, generated or unlabeled
            ones included), `epochs` and `test_accuracy` (or `None`).
            Defaults to `None`.

    Attributes:
        baseline_model: The student trained alone (a `keras.Model`), when the
            report comes from `distill()`; not part of `to_dict()`.
        distilled_model: The best distilled student on validation (plain
            KD or the searched candidate), or `None`.
        chosen_model: The kept student as trained before the refit, or
            `None`.

    Example:
        ```python
        best, report = keras_distill.distill(teacher, student, x, y, test_data=(xt, yt))
        print(report)
        report.save_json("outputs/recipe.json")
        ```
    """

    def __init__(self, runs, teacher, kept, reason, settings, refit=None):
        self.runs = [dict(run) for run in runs]
        self.teacher = dict(teacher)
        self.kept = str(kept)
        self.reason = str(reason)
        self.settings = dict(settings)
        self.refit = None if refit is None else dict(refit)
        self.baseline_model = None
        self.distilled_model = None
        self.chosen_model = None

    @property
    def distilled(self):
        """True when the returned student is a distilled one, not the student alone."""
        return self.kept != BASELINE

    def __getitem__(self, name):
        for run in self.runs:
            if run["name"] == name:
                return run
        raise KeyError(f"No run {name!r} in the report. Existing: {[r['name'] for r in self.runs]}")

    def to_dict(self):
        """Everything in the report, as plain Python values."""
        return {
            "kept": self.kept,
            "reason": self.reason,
            "teacher": self.teacher,
            "runs": self.runs,
            "settings": self.settings,
            "refit": self.refit,
        }

    @classmethod
    def from_json(cls, text):
        """Rebuilds a report (without its models) from `to_json()` output."""
        data = json.loads(text)
        return cls(
            data["runs"],
            data["teacher"],
            data["kept"],
            data["reason"],
            data["settings"],
            data.get("refit"),
        )

    def to_markdown(self):
        """A Markdown table: the teacher, then one line per trained student."""
        with_test = self.teacher.get("test_accuracy") is not None
        header = ["run", "alpha", "T", "epochs (best)", "validation accuracy"]
        header += ["test accuracy"] if with_test else []
        teacher = ["teacher", "", "", "", _percent(self.teacher["validation_accuracy"])]
        teacher += [_percent(self.teacher["test_accuracy"])] if with_test else []
        lines = [teacher]
        for run in self.runs:
            name = run["name"] + (" (kept)" if run["name"] == self.kept else "")
            if run["stage"] == "search":
                name += " (search only)"
            cells = [
                f"**{name}**" if run["name"] == self.kept else name,
                "" if run["alpha"] is None else f"{run['alpha']:g}",
                "" if run["temperature"] is None else f"{run['temperature']:g}",
                f"{run['epochs']} ({run['best_epoch']})",
                _percent(run["validation_accuracy"]),
            ]
            cells += [_percent(run["test_accuracy"])] if with_test else []
            lines.append(cells)
        return markdown_table(header, lines)

    to_table = to_markdown

    def __str__(self):
        settings = self.settings
        transfer = settings.get("transfer_description", "")
        text = (
            f"{self.to_markdown()}\n"
            f"Accuracy in %. {settings['num_fit']:,} labelled examples to train on, "
            f"{settings['num_validation']:,} to validate; {transfer}.\n"
            f"Kept: {self.kept}. {self.reason}"
        )
        if self.refit is not None:
            refit = self.refit
            test = refit.get("test_accuracy")
            text += (
                f"\nRefit: {refit['run']} trained again on all {refit['num_examples']:,} "
                f"labelled examples ({refit['num_transfer']:,} inputs) for {refit['epochs']} "
                "epochs; this student is the one returned"
                + ("" if test is None else f" (test accuracy {_percent(test)})")
                + "."
            )
        if "seconds" in settings:
            text += f"\n{settings['total_epochs']} epochs in all, {settings['seconds']:g} s."
        return text

    def __repr__(self):
        return f"RecipeReport(kept={self.kept!r}, runs={[r['name'] for r in self.runs]})"

    def plot_validation(self, path):
        """PNG of every run's validation accuracy per epoch (the kept one drawn thicker)."""
        figure = plots.new_figure(6.5, 4.0)
        axes = figure.add_subplot(1, 1, 1)
        for run in self.runs:
            curve = [100.0 * value for value in run["curve"]]
            kept = run["name"] == self.kept
            axes.plot(
                range(1, len(curve) + 1),
                curve,
                linewidth=2.5 if kept else 1.2,
                label=run["name"] + (" (kept)" if kept else ""),
            )
        axes.axhline(
            100.0 * self.teacher["validation_accuracy"],
            color="grey",
            linestyle="--",
            linewidth=1,
            label="teacher",
        )
        axes.set_xlabel("epoch")
        axes.set_ylabel("validation accuracy (%)")
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small", loc="lower right")
        axes.set_title("validation accuracy of each student")
        figure.tight_layout()
        return plots.save_png(figure, path)


def _percent(value):
    return "-" if value is None else f"{100.0 * value:.2f}"
