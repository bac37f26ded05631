"""The `keras-distill` command line: distil, export and report without writing Python.

Data files are `.npz` archives (`numpy.savez("train.npz", x=inputs, y=labels)`)
holding an array `x` (inputs, examples first) and an array `y` (integer class
labels, or one-hot rows). Models are `.keras` files whose outputs are logits.

Bad input ends with one line on stderr, `keras-distill: error: ...`, and exit
code 2 (usage) or 1 (anything else); no traceback.
"""

import json
import os
import sys

from keras_distill._checks import check_choice
from keras_distill._checks import check_number
from keras_distill._checks import check_path
from keras_distill._checks import first_line
from keras_distill._files import write_text
from keras_distill_cli import DISTILL_DEFAULTS
from keras_distill_cli import EXIT_FAILURE
from keras_distill_cli import EXIT_INTERRUPTED
from keras_distill_cli import EXIT_USAGE
from keras_distill_cli import LOSS_NAMES
from keras_distill_cli import NOT_WITH_RECIPE
from keras_distill_cli import OPTIMIZERS
from keras_distill_cli import PROG
from keras_distill_cli import QUANTIZATIONS
from keras_distill_cli import RECIPE_DEFAULTS
from keras_distill_cli import VERBOSITIES
from keras_distill_cli import CliError
from keras_distill_cli import build_parser

__all__ = [
    "CliError",
    "DISTILL_DEFAULTS",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "LOSS_NAMES",
    "NOT_WITH_RECIPE",
    "OPTIMIZERS",
    "PROG",
    "QUANTIZATIONS",
    "RECIPE_DEFAULTS",
    "build_parser",
    "main",
    "run",
]


def main(argv=None):
    """Runs the command line; returns the exit code.

    Args:
        argv: Arguments without the program name. Defaults to `sys.argv[1:]`.

    Returns:
        `0` on success, `1` on failure, `2` on a usage error.
    """
    try:
        args = build_parser().parse_args(argv)
    except CliError as error:
        return _fail(str(error), error.code)
    return run(args)


def run(args):
    """Runs the command of parsed arguments (`build_parser().parse_args`); returns the exit code."""
    handlers = {"distill": run_distill, "export": run_export, "report": run_report}
    try:
        return handlers[args.command](args) or 0
    except CliError as error:
        return _fail(str(error), error.code)
    except (ValueError, OSError, ImportError) as error:
        return _fail(_one_line(error), EXIT_FAILURE)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except Exception as error:  # noqa: BLE001 - the command line never shows a traceback.
        return _fail(f"{type(error).__name__}: {_one_line(error)}", EXIT_FAILURE)


def run_distill(args):
    """`keras-distill distill`: trains the student and saves it to `--out`."""
    verbose = int(check_choice("--verbose", args.verbose, VERBOSITIES))
    _check_suffix("--out", args.out, ".keras")
    _check_outputs(
        files={"--out": args.out, "--history": args.history, "--recipe-report": args.recipe_report},
        folders={"--tensorboard": args.tensorboard, "--backup-dir": args.backup_dir},
        inputs={
            "--teacher": args.teacher,
            "--student": args.student,
            "--data": args.data,
            "--val": args.val,
            "--config": args.config,
            "--unlabeled": args.unlabeled,
        },
    )
    if args.recipe:
        return run_recipe(args, verbose)
    for option, value in (("--unlabeled", args.unlabeled), ("--recipe-report", args.recipe_report)):
        if value is not None:
            raise CliError(f"`{option}` needs `--recipe`. Received: {option}={value}")
    options = _distill_options(args)
    from keras_distill import saving
    from keras_distill._keras import keras
    from keras_distill.callbacks import StopOnNonFinite
    from keras_distill.distiller import Distiller

    keras.utils.set_random_seed(options["seed"])
    teacher, student, (x, y), validation = _load_training(args)
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(
        optimizer=_optimizer(keras, options["optimizer"], options["learning_rate"]),
        metrics=[_accuracy(keras, y, student.output_shape)],
        alpha=options["alpha"],
        temperature=options["temperature"],
        distillation_loss=options["distillation_loss"],
    )
    guard = StopOnNonFinite(verbose=False)
    callbacks = [guard]
    if args.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=args.tensorboard))
    if args.backup_dir:
        callbacks.append(keras.callbacks.BackupAndRestore(backup_dir=args.backup_dir))
    history = distiller.fit(
        x,
        y,
        epochs=options["epochs"],
        batch_size=options["batch_size"],
        validation_data=validation,
        callbacks=callbacks,
        verbose=verbose,
    )
    if guard.message:
        raise CliError(f"{guard.message} The student was not saved. Received: --out={args.out}")
    saving.save_model(distiller.student, args.out)
    if args.history:
        _write_json(args.history, {k: [float(v) for v in vs] for k, vs in history.history.items()})
    print(f"Saved the student to {args.out}")
    return 0


def run_recipe(args, verbose):
    """`keras-distill distill --recipe`: the safe recipe; says which student it kept."""
    for key in NOT_WITH_RECIPE:
        value = getattr(args, key)
        if value is not None:
            option = "--" + key.replace("_", "-")
            raise CliError(
                f"`{option}` cannot be used with `--recipe` (it trains with Adam and "
                f"the KL loss, and writes --recipe-report). Received: {option}={value}"
            )
    options = _distill_options(args, RECIPE_DEFAULTS)
    from keras_distill import saving
    from keras_distill.recipe import distill

    teacher, student, (x, y), validation = _load_training(args)
    unlabeled = None
    if args.unlabeled:
        (unlabeled,) = saving.load_arrays(args.unlabeled, ("x",), argument_name="--unlabeled")
    candidates = {}
    if options["alpha"] is not None or options["temperature"] is not None:
        alpha = 0.5 if options["alpha"] is None else options["alpha"]
        temperature = 1.0 if options["temperature"] is None else options["temperature"]
        candidates["candidates"] = ((alpha, temperature),)
    best, report = distill(
        teacher,
        student,
        x,
        y,
        validation_data=validation,
        unlabeled=unlabeled,
        epochs=options["epochs"],
        batch_size=options["batch_size"],
        learning_rate=options["learning_rate"],
        seed=options["seed"],
        verbose=min(verbose, 1),
        **candidates,
    )
    saving.save_model(best, args.out)
    if args.recipe_report:
        report.save_json(args.recipe_report)
    if verbose:
        print(report)
    print(f"Saved the student to {args.out} (kept: {report.kept})")
    return 0


def run_export(args):
    """`keras-distill export`: writes a `.tflite` file and prints the parity report."""
    if args.generate:
        return _run_generation_export(args)
    for option in ("max_length", "prefill_length"):
        if getattr(args, option) is not None:
            flag = "--" + option.replace("_", "-")
            raise CliError(f"`{flag}` needs `--generate`. Received: {flag}={getattr(args, option)}")
    quantization = check_choice("--quantization", args.quantization, QUANTIZATIONS)
    _check_suffix("--out", args.out, ".tflite")
    _check_outputs(
        files={"--out": args.out, "--json": args.json},
        inputs={"MODEL.keras": args.model, "--calibration": args.calibration},
    )
    max_abs_diff = _number("--max-abs-diff", args.max_abs_diff, minimum=0.0)
    min_agreement = _number("--min-agreement", args.min_agreement, minimum=0.0, maximum=1.0)
    if quantization == "int8" and not args.calibration:
        raise CliError(
            "`--quantization int8` needs `--calibration` (a .npz file with typical inputs `x`) "
            "to calibrate the activation ranges. Received: --calibration=None"
        )
    from keras_distill import saving
    from keras_distill.compression.export import export_tflite

    model = _load("MODEL.keras", args.model, args.unsafe_allow_lambda)
    calibration = None
    if args.calibration:
        (calibration,) = saving.load_arrays(args.calibration, ("x",), argument_name="--calibration")
    report = export_tflite(
        model,
        args.out,
        quantization=None if quantization == "none" else quantization,
        representative_data=calibration,
        max_abs_diff_threshold=max_abs_diff,
        min_top1_agreement=min_agreement,
    )
    print(report)
    if args.json:
        write_text(args.json, report.to_json())
    return 0


def _run_generation_export(args):
    """`keras-distill export --generate`: a causal LM with `prefill` and `decode` signatures."""
    quantization = check_choice("--quantization", args.quantization, ("none", "dynamic", "float16"))
    _check_suffix("--out", args.out, ".tflite")
    _check_outputs(
        files={"--out": args.out, "--json": args.json}, inputs={"MODEL.keras": args.model}
    )
    for flag, value in (
        ("--calibration", args.calibration),
        ("--max-abs-diff", args.max_abs_diff),
        ("--min-agreement", args.min_agreement),
    ):
        if value is not None:
            raise CliError(f"`{flag}` does not apply to `--generate`. Received: {flag}={value}")
    max_length = _number("--max-length", args.max_length, minimum=1, integer=True)
    prefill_length = _number("--prefill-length", args.prefill_length, minimum=1, integer=True)
    from keras_distill.compression.generation_export import export_generation_tflite

    model = _load("MODEL.keras", args.model, args.unsafe_allow_lambda)
    info = export_generation_tflite(
        model,
        args.out,
        max_sequence_length=max_length,
        prefill_length=prefill_length,
        quantization=None if quantization == "none" else quantization,
    )
    print("TFLite generation export")
    for key in ("path", "quantization", "file_size_bytes", "max_sequence_length"):
        print(f"  {key}: {info[key]}")
    print(f"  prefill_length: {info['prefill_length']}, cache_shape: {list(info['cache_shape'])}")
    print(f"  max |tflite - tensorflow| logits per step: {info['max_abs_logit_diff']}")
    if args.json:
        _write_json(args.json, {**info, "cache_shape": list(info["cache_shape"])})
    return 0


def run_report(args):
    """`keras-distill report`: prints a comparison table and writes JSON and PNG files."""
    repeats = _number("--latency-repeats", args.latency_repeats, minimum=0, integer=True)
    _check_outputs(folders={"--out-dir": args.out_dir})
    from keras_distill import _checks
    from keras_distill import saving
    from keras_distill.evaluation.report import compare

    teacher = _load("--teacher", args.teacher, args.unsafe_allow_lambda)
    student = _load("--student", args.student, args.unsafe_allow_lambda)
    x, y = saving.load_arrays(args.data, ("x", "y"), argument_name="--data")
    _checks_report_data(_checks, x, y, teacher)
    labels = y.argmax(-1) if y.ndim == 2 and y.shape[-1] > 1 else y.reshape(-1)
    report = compare(teacher, student, x, labels, latency_repeats=repeats)
    print(report)
    os.makedirs(args.out_dir, exist_ok=True)
    json_path = os.path.join(args.out_dir, "report.json")
    png_path = os.path.join(args.out_dir, "accuracy_vs_size.png")
    report.save_json(json_path)
    report.plot_accuracy_vs_size(png_path)
    print(f"Wrote {json_path} and {png_path}")
    return 0


def _check_outputs(files=None, folders=None, inputs=None):
    """Checks every output location before the long work starts (a `CliError` if one is bad)."""
    from keras_distill import _checks

    try:
        for name, path in (files or {}).items():
            if path is not None:
                _checks.check_output_file(name, path, inputs)
        for name, path in (folders or {}).items():
            if path is not None:
                _checks.check_output_folder(name, path)
    except ValueError as error:
        raise CliError(str(error)) from None


def _checks_report_data(checks, x, y, teacher):
    """Raises a `CliError` naming `--data` for labels or inputs the report cannot use."""
    num_classes = teacher.output_shape[-1]
    try:
        checks.check_labels(y, num_classes, mask_value=None)
        checks.check_finite("x", x)
    except ValueError as error:
        raise CliError(f"`--data` cannot be used: {error}") from None


def _distill_options(args, defaults=DISTILL_DEFAULTS):
    options = dict(defaults)
    if args.config:
        from keras_distill import saving

        config = saving.load_config(args.config, argument_name="--config")
        unknown = sorted(set(config) - set(DISTILL_DEFAULTS))
        if unknown:
            raise CliError(
                f"`--config` has unknown options {unknown}. Valid options are: "
                f"{sorted(DISTILL_DEFAULTS)}. Received: --config={args.config}"
            )
        options.update({key: (key, value) for key, value in config.items()})
    for key in DISTILL_DEFAULTS:
        value = getattr(args, key)
        if value is not None:
            options[key] = ("--" + key.replace("_", "-"), value)
    checks = {
        "alpha": lambda name, v: _number(name, v, minimum=0.0, maximum=1.0),
        "temperature": lambda name, v: _number(name, v, minimum=0.0, open_minimum=True),
        "epochs": lambda name, v: _number(name, v, minimum=1, integer=True),
        "batch_size": lambda name, v: _number(name, v, minimum=1, integer=True),
        "learning_rate": lambda name, v: _number(name, v, minimum=0.0, open_minimum=True),
        "optimizer": lambda name, v: check_choice(name, v, OPTIMIZERS),
        "distillation_loss": lambda name, v: check_choice(name, v, LOSS_NAMES),
        "seed": lambda name, v: _number(name, v, minimum=0, integer=True),
    }
    for key, value in options.items():
        if isinstance(value, tuple):
            options[key] = checks[key](*value)
    return options


def _number(name, value, integer=False, **bounds):
    """`value` (a string or a number from `--config`) as a number checked by `check_number`."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            pass  # check_number refuses the string with the usual message.
    elif integer and isinstance(value, float) and value.is_integer():
        value = int(value)
    return check_number(name, value, integer=integer, **bounds)


def _check_suffix(name, path, suffix):
    try:
        check_path(name, path, suffix)
    except ValueError:
        raise CliError(
            f"`{name}` must be a file path ending in '{suffix}'. Received: {name}={path}"
        ) from None


def _load_training(args):
    """The teacher, the student, `--data` and `--val` (or `None`) of `distill`."""
    from keras_distill import saving

    teacher = _load("--teacher", args.teacher, args.unsafe_allow_lambda)
    student = _load("--student", args.student, args.unsafe_allow_lambda)
    data = saving.load_arrays(args.data, ("x", "y"), argument_name="--data")
    validation = None
    if args.val:
        validation = saving.load_arrays(args.val, ("x", "y"), argument_name="--val")
    return teacher, student, data, validation


def _load(name, path, allow_lambda):
    from keras_distill import saving

    return saving.load_model(path, allow_lambda=allow_lambda, argument_name=name)


def _optimizer(keras, name, learning_rate):
    classes = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "rmsprop": keras.optimizers.RMSprop,
        "sgd": keras.optimizers.SGD,
    }
    return classes[name](learning_rate=learning_rate)


def _accuracy(keras, y, output_shape=(None, None)):
    """Accuracy for sparse labels, or for one-hot rows (labels of the logits' rank)."""
    single = output_shape and not isinstance(output_shape[0], (list, tuple))
    logits_rank = len(output_shape) if single else 2
    if y.ndim == logits_rank and y.shape[-1] > 1:
        return keras.metrics.CategoricalAccuracy(name="accuracy")
    return keras.metrics.SparseCategoricalAccuracy(name="accuracy")


def _write_json(path, content):
    write_text(path, json.dumps(content, indent=2))


def _one_line(error):
    return " ".join(first_line(error).split())


def _fail(message, code):
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
