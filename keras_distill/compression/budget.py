"""The most accurate student that fits a latency and size budget: channel fraction and int8."""

import os

import numpy as np

from keras_distill._checks import check_model
from keras_distill._checks import check_number
from keras_distill.compression.channels import prune_channels
from keras_distill.compression.channels import recover_channels
from keras_distill.compression.export import export_tflite
from keras_distill.compression.litert import run_tflite
from keras_distill.compression.litert import tflite_latency

QUANTIZATIONS = (None, "int8")


def search_budget(
    student,
    x_train,
    y_train,
    x_test,
    y_test,
    target_latency_ms=None,
    target_size_kib=None,
    max_accuracy_drop=None,
    fractions=(1.0, 0.75, 0.5, 0.25),
    quantizations=QUANTIZATIONS,
    recover_epochs=2,
    batch_size=32,
    output_dir="budget",
):
    """Searches channel fractions and int8 for the most accurate file within a budget.

    Each candidate starts from the trained `student`'s weights (no training
    from scratch): `prune_channels(student, fraction)`, then
    `recover_epochs` of `recover_channels` with the unpruned `student` as
    teacher; each is exported as float32 and/or int8 `.tflite` (calibrated
    on `x_train`). Every file is run by LiteRT on `x_test`: accuracy, size
    and latency (one example, 1 thread, minimum of 9 calls after 3 warm-up
    calls, on this machine). Of the files within every target given, the
    most accurate is returned.

    Args:
        student: The trained (e.g. distilled) `keras.Model`, logits out.
        x_train, y_train: Data for recovery and int8 calibration.
        x_test, y_test: Held-out data the files are measured on.
        target_latency_ms: Largest latency allowed. Defaults to `None`.
        target_size_kib: Largest file size allowed, in KiB. Defaults to `None`.
        max_accuracy_drop: Largest accuracy loss allowed against the
            unpruned float32 file (a fraction). Defaults to `None`.
        fractions: Channel fractions tried. Defaults to `(1.0, 0.75, 0.5, 0.25)`.
        quantizations: `None` (float32) and/or `"int8"`. Defaults to both.
        recover_epochs: Recovery epochs per pruned candidate. Defaults to `2`.
        batch_size: Batch size of the recovery. Defaults to `32`.
        output_dir: Folder of the candidate files. Defaults to `"budget"`.

    Returns:
        `{"model", "path", "choice", "candidates"}`: the chosen Keras model,
        its file, its row, and a row per candidate (`fraction`,
        `quantization`, `accuracy`, `size_kib`, `latency_ms`, `meets`).

    Raises:
        ValueError: When no candidate meets the budget, naming the targets
            missed and the closest candidate.

    Example:
        ```python
        found = search_budget(student, x_train, y_train, x_test, y_test,
                              target_latency_ms=0.5, target_size_kib=200)
        found["choice"]
        ```
    """
    check_model("student", student)
    targets = {}
    for name, value in (
        ("target_latency_ms", target_latency_ms),
        ("target_size_kib", target_size_kib),
        ("max_accuracy_drop", max_accuracy_drop),
    ):
        if value is not None:
            targets[name] = float(check_number(name, value, minimum=0))
    for value in quantizations:
        if value not in QUANTIZATIONS:
            raise ValueError(
                f"`quantizations` must hold values from {list(QUANTIZATIONS)}. "
                f"Received: quantizations={quantizations!r}"
            )
    os.makedirs(output_dir, exist_ok=True)
    x_test = np.asarray(x_test, dtype=np.float32)
    rows, models = [], {}
    for fraction in fractions:
        model = prune_channels(student, fraction=fraction)
        if fraction < 1.0 and recover_epochs > 0:
            recover_channels(
                model, student, x_train, y_train, epochs=recover_epochs, batch_size=batch_size
            )
        for quantization in quantizations:
            path = os.path.join(
                output_dir, f"channels_{fraction:g}_{quantization or 'float32'}.tflite"
            )
            export_tflite(
                model,
                path,
                quantization=quantization,
                representative_data=None if quantization is None else np.asarray(x_train)[:200],
                sample_inputs=x_test[:64],
            )
            accuracy = float(np.mean(run_tflite(path, x_test).argmax(-1) == np.asarray(y_test)))
            rows.append(
                {
                    "fraction": float(fraction),
                    "quantization": quantization or "float32",
                    "accuracy": accuracy,
                    "size_kib": os.path.getsize(path) / 1024,
                    "latency_ms": tflite_latency(path, x_test, warmup=3, num_threads=1)["min_ms"],
                    "path": path,
                }
            )
            models[path] = model
    reference = max((r["accuracy"] for r in rows if r["fraction"] == max(fractions)), default=None)
    for row in rows:
        row["missed"] = _missed(row, targets, reference)
        row["meets"] = not row["missed"]
    meeting = [row for row in rows if row["meets"]]
    if not meeting:
        closest = min(rows, key=lambda row: len(row["missed"]))
        raise ValueError(
            "No candidate meets the budget. The closest, "
            f"{closest['fraction']:g} of the channels in {closest['quantization']}, missed "
            + "; ".join(closest["missed"])
            + ". Loosen a target, or add smaller `fractions`. Received: "
            + ", ".join(f"{name}={value:g}" for name, value in targets.items())
        )
    choice = max(meeting, key=lambda row: (row["accuracy"], -row["latency_ms"]))
    return {
        "model": models[choice["path"]],
        "path": choice["path"],
        "choice": choice,
        "candidates": rows,
    }


def _missed(row, targets, reference):
    missed = []
    if "target_latency_ms" in targets and row["latency_ms"] > targets["target_latency_ms"]:
        missed.append(
            f"target_latency_ms ({row['latency_ms']:.4f} ms > {targets['target_latency_ms']:g})"
        )
    if "target_size_kib" in targets and row["size_kib"] > targets["target_size_kib"]:
        missed.append(
            f"target_size_kib ({row['size_kib']:.1f} KiB > {targets['target_size_kib']:g})"
        )
    drop = None if reference is None else reference - row["accuracy"]
    if "max_accuracy_drop" in targets and drop is not None and drop > targets["max_accuracy_drop"]:
        missed.append(f"max_accuracy_drop ({drop:.4f} > {targets['max_accuracy_drop']:g})")
    return missed
