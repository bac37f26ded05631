"""PNG plots of distillation runs: training curves and accuracy against size.

matplotlib is imported only when a plot is drawn, and draws off-screen
(no display needed, the global pyplot state is left alone).
"""

import math
import os

from keras_distill._checks import check_choice
from keras_distill._files import atomic_path


def new_figure(width, height):
    """A matplotlib `Figure` drawn off-screen (matplotlib is imported here)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "Plots need matplotlib. Install it with `pip install 'keras-distill[examples]'` "
            "or `pip install matplotlib`."
        ) from error
    return Figure(figsize=(width, height), dpi=100)


def plain_number_formatter():
    """A tick formatter that writes `50`, not `5 x 10^1`, on logarithmic axes."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _: f"{value:g}")


def history_dict(history):
    """The `{name: [value per epoch]}` dict of a `History` object or a plain dict."""
    values = getattr(history, "history", history)
    if not isinstance(values, dict) or not values:
        raise ValueError(
            "`history` must be the History returned by `fit()` or a non-empty dict "
            "{name: [value per epoch]}. "
            f"Received: history={type(history).__name__}"
        )
    return {str(name): [float(v) for v in series] for name, series in values.items()}


def plot_history(history, path, keys=None, title=None):
    """Draws every quantity of a `fit()` history, one panel each, into a PNG.

    A `val_<name>` series shares the panel of `<name>`. For a `Distiller`
    the panels are `loss`, `student_loss`, `distillation_loss`, one per
    feature or attention match, and the compiled metrics.

    Args:
        history: The `History` returned by `fit()`, or its `.history` dict.
        path: Output `.png` path; folders are created.
        keys: Names to draw (without `val_`). Defaults to every name.
        title: Figure title. Defaults to none.

    Returns:
        `path`.

    Example:
        ```python
        history = distiller.fit(x, y, epochs=10, validation_data=(xv, yv))
        plot_history(history, "outputs/history.png")
        ```
    """
    values = history_dict(history)
    names = [n for n in values if not n.startswith("val_")]
    names += [n[4:] for n in values if n.startswith("val_") and n[4:] not in names]
    if keys is not None:
        unknown = [k for k in keys if k not in names]
        if unknown:
            raise ValueError(
                f"`keys` must name quantities of the history: {names}. Received: keys={list(keys)}"
            )
        names = list(keys)
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    figure = new_figure(4.0 * columns, 3.0 * rows)
    for index, name in enumerate(names):
        axes = figure.add_subplot(rows, columns, index + 1)
        for label, key in (("train", name), ("validation", f"val_{name}")):
            if key in values:
                series = values[key]
                axes.plot(range(1, len(series) + 1), series, marker=".", label=label)
        axes.set_title(name)
        axes.set_xlabel("epoch")
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return save_png(figure, path)


def plot_accuracy_vs_size(rows, path, size_key="file_size_bytes", title=None):
    """Scatter plot of test accuracy against model size, one point per model, named in a legend.

    Args:
        rows: Dicts with `"name"`, `"accuracy"` and `size_key` (as in
            `Report.rows`).
        path: Output `.png` path; folders are created.
        size_key: `"file_size_bytes"` or `"parameters"`. Defaults to
            `"file_size_bytes"`.
        title: Axes title. Defaults to none.

    Returns:
        `path`.
    """
    check_choice("size_key", size_key, ("file_size_bytes", "parameters"))
    figure = new_figure(5.5, 4.0)
    axes = figure.add_subplot(1, 1, 1)
    scale, unit = (
        (1024.0, "file size (KiB)") if size_key == "file_size_bytes" else (1.0, "parameters")
    )
    markers = ("o", "s", "^", "D", "v", "P", "X", "*")
    for index, row in enumerate(rows):
        if row.get(size_key) is None or row.get("accuracy") is None:
            continue
        # A legend, not text beside the points: models of the same size share a position.
        axes.scatter(
            [row[size_key] / scale],
            [row["accuracy"]],
            s=60,
            alpha=0.8,
            marker=markers[index % len(markers)],
            label=row["name"],
        )
    axes.set_xscale("log")
    plain = plain_number_formatter()
    axes.xaxis.set_major_formatter(plain)
    axes.xaxis.set_minor_formatter(plain)
    axes.margins(x=0.3, y=0.15)
    axes.legend(fontsize="small", loc="best")
    axes.set_xlabel(unit)
    axes.set_ylabel("accuracy")
    axes.grid(alpha=0.3)
    if title:
        axes.set_title(title)
    figure.tight_layout()
    return save_png(figure, path)


def save_png(figure, path):
    """Writes `figure` to `path` as PNG atomically and returns `path`."""
    path = os.fspath(path)
    with atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, format="png")
    return path
