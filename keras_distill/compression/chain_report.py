"""`ChainReport`: one row per compression stage, as a table, JSON and a PNG."""

from keras_distill.evaluation import plots
from keras_distill.evaluation._tables import JsonReport
from keras_distill.evaluation._tables import markdown_table

COLUMNS = (
    ("stage", "stage", "{}"),
    ("accuracy", "accuracy", "{:.4f}"),
    ("parameters", "params", "{:,}"),
    ("sparsity", "sparsity", "{:.3f}"),
    ("tflite_bytes", ".tflite B", "{:,}"),
    ("gzip_bytes", "gzip B", "{:,}"),
    ("latency_ms", "LiteRT ms", "{:.4f}"),
    ("teacher_agreement", "teacher agr.", "{:.4f}"),
)


class ChainReport(JsonReport):
    """What `compress()` measured, one row per stage.

    Each row holds `stage`, `accuracy` (top-1 on the test set; for the
    `tflite` stage, of the file run by LiteRT), `parameters`, `sparsity`
    (zeros in the kernels), `tflite_bytes` and `gzip_bytes` (the stage's
    `.tflite` file: float32 for Keras stages, int8 for `tflite`; `None` for
    `qat`, whose file is the `tflite` stage), `latency_ms` (LiteRT, batch 1,
    minimum of repeated calls), `teacher_agreement` (top-1 agreement with
    the teacher) and `tflite_path`.

    Args:
        rows: List of row dicts, as above.
        settings: Dict of how the chain ran.
        models: Optional `{stage: keras.Model}` (kept, not serialized).
        export_report: Optional `ExportReport` of the final file.

    Example:
        ```python
        print(report)
        report.save_json("chain.json")
        report.plot("chain.png")
        ```
    """

    def __init__(self, rows, settings, models=None, export_report=None):
        self.rows = [dict(row) for row in rows]
        self.settings = dict(settings)
        self.models = dict(models or {})
        self.export_report = export_report

    def __getitem__(self, stage):
        for row in self.rows:
            if row["stage"] == stage:
                return row
        raise KeyError(
            f"No stage {stage!r}. Existing stages are: {[r['stage'] for r in self.rows]}"
        )

    def to_dict(self):
        """Rows, settings and the final export's parity report, JSON-compatible."""
        return {
            "settings": self.settings,
            "stages": self.rows,
            "export": None if self.export_report is None else self.export_report.to_dict(),
        }

    def to_markdown(self):
        """The table as GitHub Markdown."""
        header = [label for _, label, _ in COLUMNS]
        return markdown_table(header, [self._cells(row) for row in self.rows])

    to_table = to_markdown

    def _cells(self, row):
        return ["n/a" if row.get(key) is None else fmt.format(row[key]) for key, _, fmt in COLUMNS]

    def __str__(self):
        table = [[label for _, label, _ in COLUMNS]] + [self._cells(row) for row in self.rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
        lines = [
            "  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in table
        ]
        return "\n".join(lines)

    def plot(self, path, title="Accuracy against .tflite size"):
        """Draws accuracy against `.tflite` size (log scale), one labelled point per stage.

        matplotlib is imported here and draws off-screen.

        Args:
            path: Output `.png` path; folders are created.
            title: Figure title. Defaults to `"Accuracy against .tflite size"`.

        Returns:
            `path`.
        """
        figure = plots.new_figure(6, 4)
        axes = figure.add_subplot(1, 1, 1)
        points = [r for r in self.rows if r.get("tflite_bytes") and r.get("accuracy") is not None]
        for key, marker in (("tflite_bytes", "o"), ("gzip_bytes", "s")):
            xs = [r[key] / 1024 for r in points if r.get(key)]
            ys = [r["accuracy"] for r in points if r.get(key)]
            axes.plot(xs, ys, marker=marker, linestyle="-", label=key.replace("_bytes", ""))
        for row in points:
            axes.annotate(
                row["stage"],
                (row["tflite_bytes"] / 1024, row["accuracy"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
        axes.set_xscale("log")
        axes.set_xlabel("size (KiB, log scale)")
        axes.set_ylabel("test accuracy")
        axes.set_title(title)
        axes.grid(True, alpha=0.3)
        axes.legend()
        figure.tight_layout()
        return plots.save_png(figure, path)
