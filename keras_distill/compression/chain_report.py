"""`ChainReport`: one row per compression stage, as a table, JSON and a PNG."""

from keras_distill.evaluation import plots
from keras_distill.evaluation._tables import JsonReport
from keras_distill.evaluation._tables import markdown_table

COLUMNS = (
    ("stage", "stage", "{}"),
    ("accuracy", "accuracy", "{:.4f}"),
    ("file_accuracy", "file acc.", "{:.4f}"),
    ("parameters", "params", "{:,}"),
    ("sparsity", "sparsity", "{:.3f}"),
    ("tflite_bytes", ".tflite B", "{:,}"),
    ("gzip_bytes", "gzip B", "{:,}"),
    ("latency_ms", "LiteRT ms", "{:.4f}"),
    ("latency_ms_2_threads", "ms 2 thr.", "{:.4f}"),
    ("teacher_agreement", "teacher agr.", "{:.4f}"),
    ("flex_ops", "Flex ops", "{}"),
    ("rolled_back", "rolled back", "{}"),
)


class ChainReport(JsonReport):
    """What `compress()` measured, one row per stage.

    Each row holds `stage`, `accuracy` (top-1 on the test set; for the
    `tflite` stage, of the file run by LiteRT), `parameters`, `sparsity`
    (zeros in the kernels), `tflite_bytes` and `gzip_bytes` (the stage's
    `.tflite` file: float32 for Keras stages, int8 for `tflite`; `None` for
    `qat`, whose file is the `tflite` stage), `latency_ms` and
    `latency_ms_2_threads` (LiteRT, batch 1, 1 and 2 threads, minimum of
    repeated calls), `teacher_agreement` (top-1 agreement with the teacher)
    and `tflite_path`. Rows with a file also hold what LiteRT measured on
    it: `file_accuracy`, `file_teacher_agreement`, `ops` (operator names)
    and `flex_ops` (those needing the Flex delegate). Every row after
    `input` says whether it was `rolled_back` (see `compress`'s
    `max_accuracy_drop`).

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
        return [_cell(row.get(key), fmt) for key, _, fmt in COLUMNS]

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


def _cell(value, fmt):
    if value is None:
        return "n/a"
    if isinstance(value, (list, tuple)):
        return ", ".join(value) if value else "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return fmt.format(value)
