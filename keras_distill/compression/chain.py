"""`compress`: distil -> prune -> QAT -> int8 `.tflite` in one call, measured per stage."""

import os

import numpy as np

from keras_distill._keras import GENERATION
from keras_distill._keras import keras
from keras_distill.compression import _training
from keras_distill.compression.chain_report import ChainReport
from keras_distill.compression.export import export_tflite
from keras_distill.compression.litert import run_tflite
from keras_distill.compression.litert import tflite_latency
from keras_distill.compression.pruning import prune
from keras_distill.compression.pruning import weight_sparsity
from keras_distill.compression.quantization import quantization_aware_training
from keras_distill.evaluation.sizes import gzip_size
from keras_distill.evaluation.sizes import parameter_count

STAGES = ("distill", "prune", "qat", "tflite")


def compress(
    student,
    x_train,
    y_train,
    x_test,
    y_test,
    teacher=None,
    stages=STAGES,
    output_dir="compressed",
    distill_epochs=5,
    prune_epochs=3,
    qat_epochs=1,
    target_sparsity=0.8,
    batch_size=32,
    learning_rate=1e-3,
    alpha=0.5,
    temperature=4.0,
    keep_float=False,
    int8_io=False,
    representative_samples=200,
    plot=True,
    verbose=0,
):
    """Runs the compression chain on a copy of `student` and reports every stage.

    Stages, in this order, each optional:
    - `"distill"`: train with the `Distiller` from `teacher`.
    - `"prune"`: distillation-aware magnitude pruning to `target_sparsity`.
    - `"qat"`: distillation-aware quantization-aware training (keeps the
      pruned zeros).
    - `"tflite"`: full-integer int8 `.tflite` (calibrated on `x_train`
      unless the model went through QAT), checked with LiteRT.

    The first row, `"input"`, measures the student as given. Each Keras stage
    is also exported as a float32 `.tflite` to measure its size, gzip size
    and LiteRT latency. The pruning and QAT stages use the teacher when
    there is one. The report is saved as `chain_report.json` (and
    `chain_report.png` when `plot`) in `output_dir`, beside the files.

    All four stages run on both generations: pruning and QAT use
    tensorflow-model-optimization on tf_keras and this package's own
    implementation on Keras 3 (see `prune` and
    `quantization_aware_training`); `settings["generation"]` in the report
    says which ran.

    Args:
        student: Built `keras.Model` (logits out). Not modified.
        x_train: Training inputs (array).
        y_train: Integer training labels.
        x_test: Test inputs (array).
        y_test: Integer test labels.
        teacher: Trained `keras.Model`. Required by `"distill"`; optional
            for the other stages. Defaults to `None`.
        stages: Subset of `("distill", "prune", "qat", "tflite")`.
            Defaults to all four.
        output_dir: Folder of the files and the report. Defaults to
            `"compressed"`.
        distill_epochs: Epochs of `"distill"`. Defaults to `5`.
        prune_epochs: Epochs of `"prune"`. Defaults to `3`.
        qat_epochs: Epochs of `"qat"`. Defaults to `1`.
        target_sparsity: Sparsity of `"prune"`. Defaults to `0.8`.
        batch_size: Batch size. Defaults to `32`.
        learning_rate: Adam learning rate of every stage. Defaults to `1e-3`.
        alpha: Distiller weight of the distillation term. Defaults to `0.5`.
        temperature: Distiller temperature. Defaults to `4.0`.
        keep_float: Keep layers the QAT scheme cannot quantize in float32.
            Defaults to `False`.
        int8_io: int8 input and output tensors in the final file. Defaults
            to `False`.
        representative_samples: Calibration rows for `"tflite"`. Defaults
            to `200`.
        plot: Also draw `chain_report.png` (needs matplotlib). Defaults to
            `True`.
        verbose: As for `fit()`. Defaults to `0`.

    Returns:
        A `ChainReport`; `report.models` holds each stage's Keras model.

    Example:
        ```python
        report = compress(student, x_train, y_train, x_test, y_test,
                          teacher=teacher, output_dir="out")
        print(report)
        ```

    References:
        Han, Mao & Dally, "Deep Compression: Compressing Deep Neural Networks
        with Pruning, Trained Quantization and Huffman Coding", 2016.
        https://arxiv.org/abs/1510.00149
    """
    stages = _check_stages(stages)
    if "distill" in stages and teacher is None:
        raise ValueError(
            "The 'distill' stage needs a trained `teacher`. Pass `teacher=` or leave "
            f"'distill' out of `stages`. Received: teacher=None, stages={list(stages)}"
        )
    os.makedirs(output_dir, exist_ok=True)
    x_test = np.asarray(x_test, dtype=np.float32)
    y_test = np.asarray(y_test)
    teacher_outputs = None if teacher is None else _predict(teacher, x_test)
    measure = _Measure(x_test, y_test, teacher_outputs, output_dir)

    def optimizer():
        return keras.optimizers.Adam(learning_rate)

    common = dict(teacher=teacher, batch_size=batch_size, alpha=alpha,
                  temperature=temperature, verbose=verbose)
    model = _training.clone(student)
    models = {"input": model}
    rows = [measure.keras_row("input", model)]
    if "distill" in stages:
        model = _training.clone(model)
        _training.fit(model, teacher, x_train, y_train, distill_epochs, batch_size, optimizer(),
                      alpha, temperature, None, None, verbose)
        models["distill"] = model
        rows.append(measure.keras_row("distill", model))
    if "prune" in stages:
        model = prune(model, x_train, y_train, target_sparsity=target_sparsity,
                      epochs=prune_epochs, optimizer=optimizer(), **common)
        models["prune"] = model
        rows.append(measure.keras_row("prune", model))
    if "qat" in stages:
        model = quantization_aware_training(model, x_train, y_train, epochs=qat_epochs,
                                            optimizer=optimizer(), keep_float=keep_float,
                                            **common)
        models["qat"] = model
        rows.append(measure.keras_row("qat", model, export=False))
    export_report = None
    if "tflite" in stages:
        path = os.path.join(output_dir, "tflite.tflite")
        representative = None if "qat" in stages else np.asarray(x_train)[:representative_samples]
        export_report = export_tflite(model, path, quantization="int8",
                                      representative_data=representative, int8_io=int8_io,
                                      sample_inputs=x_test)
        row = measure.file_row("tflite", path, model)
        row["parity_max_abs_diff"] = export_report.max_abs_diff
        row["parity_top1_agreement"] = export_report.top1_agreement
        rows.append(row)
    settings = {
        "generation": GENERATION,
        "stages": list(stages),
        "distill_epochs": distill_epochs,
        "prune_epochs": prune_epochs,
        "qat_epochs": qat_epochs,
        "target_sparsity": target_sparsity,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "alpha": alpha,
        "temperature": temperature,
        "keep_float": keep_float,
        "int8_io": int8_io,
        "num_train": int(len(x_train)),
        "num_test": int(len(x_test)),
        "latency": "LiteRT invoke(), batch 1, minimum of 9 after 2 warm-up calls",
    }
    report = ChainReport(rows, settings, models=models, export_report=export_report)
    report.save_json(os.path.join(output_dir, "chain_report.json"))
    if plot:
        report.plot(os.path.join(output_dir, "chain_report.png"))
    return report


def _check_stages(stages):
    if isinstance(stages, str) or not all(stage in STAGES for stage in stages):
        raise ValueError(
            f"`stages` must be a list drawn from {list(STAGES)}. Received: stages={stages!r}"
        )
    return tuple(stage for stage in STAGES if stage in stages)


def _predict(model, x):
    return np.concatenate(
        [np.asarray(model(x[i:i + 512], training=False)) for i in range(0, len(x), 512)]
    ).astype(np.float32)


class _Measure:
    """Accuracy, sizes, latency and teacher agreement of one stage."""

    def __init__(self, x, y, teacher_outputs, output_dir):
        self.x, self.y, self.teacher_outputs, self.output_dir = x, y, teacher_outputs, output_dir

    def _scores(self, outputs):
        top1 = outputs.argmax(-1)
        agreement = None
        if self.teacher_outputs is not None:
            agreement = float(np.mean(top1 == self.teacher_outputs.argmax(-1)))
        return float(np.mean(top1 == self.y)), agreement

    def keras_row(self, stage, model, export=True):
        accuracy, agreement = self._scores(_predict(model, self.x))
        row = {"stage": stage, "accuracy": accuracy, "parameters": parameter_count(model),
               "sparsity": weight_sparsity(model)["total"], "teacher_agreement": agreement,
               "tflite_bytes": None, "gzip_bytes": None, "latency_ms": None, "tflite_path": None}
        if export:
            path = os.path.join(self.output_dir, f"{stage}.tflite")
            export_tflite(model, path, sample_inputs=self.x[:64])
            row.update(self._file_columns(path))
        return row

    def file_row(self, stage, path, model):
        accuracy, agreement = self._scores(run_tflite(path, self.x))
        row = {"stage": stage, "accuracy": accuracy, "parameters": parameter_count(model),
               "sparsity": weight_sparsity(model)["total"], "teacher_agreement": agreement}
        row.update(self._file_columns(path))
        return row

    def _file_columns(self, path):
        return {
            "tflite_bytes": os.path.getsize(path),
            "gzip_bytes": gzip_size(path),
            "latency_ms": tflite_latency(path, self.x)["min_ms"],
            "tflite_path": path,
        }
