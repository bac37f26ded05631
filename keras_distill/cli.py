"""The `keras-distill` command line: distil, export and report without writing Python.

Data files are `.npz` archives (`numpy.savez("train.npz", x=inputs, y=labels)`)
holding an array `x` (inputs, examples first) and an array `y` (integer class
labels, or one-hot rows). Models are `.keras` files whose outputs are logits.

Bad input ends with one line on stderr, `keras-distill: error: ...`, and exit
code 2 (usage) or 1 (anything else); no traceback.
"""

import argparse
import json
import math
import os
import sys

from keras_distill._checks import check_path
from keras_distill._checks import first_line
from keras_distill._files import write_text

PROG = "keras-distill"
QUANTIZATIONS = ("none", "dynamic", "float16", "int8")
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
DISTILL_DEFAULTS = {
    "alpha": 0.5,
    "temperature": 4.0,
    "epochs": 10,
    "batch_size": 32,
    "learning_rate": 0.001,
    "optimizer": "adam",
    "distillation_loss": "kl",
    "seed": 0,
}
# With --recipe, options not given come from here (keras_distill.distill's defaults).
RECIPE_DEFAULTS = dict(
    DISTILL_DEFAULTS, alpha=None, temperature=None, epochs=60, batch_size=128, learning_rate=0.002
)
# Options of plain distillation that the recipe does not take.
NOT_WITH_RECIPE = ("optimizer", "distillation_loss", "tensorboard", "backup_dir", "history")
EXIT_USAGE = 2
EXIT_FAILURE = 1
# As `keras_distill_cli.EXIT_INTERRUPTED`, which reports an interrupt before this module loads.
EXIT_INTERRUPTED = 130

_DATA_HELP = "a .npz file with arrays `x` (inputs) and `y` (integer labels)"


class CliError(Exception):
    """A one-line error for the user; `main` prints it and exits with `code`."""

    def __init__(self, message, code=EXIT_FAILURE):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one line, without the usage block."""

    def error(self, message):
        raise CliError(f"{message} (see `{self.prog} --help`)", EXIT_USAGE)


def build_parser():
    """Builds the `keras-distill` argument parser (all three subcommands)."""
    parser = _Parser(
        prog=PROG,
        description=(
            "Knowledge distillation for Keras: train a small student from a frozen teacher, "
            "export it to TFLite, and compare the two. Models are .keras files that output "
            "logits; data files are .npz archives with arrays `x` (inputs) and `y` (labels)."
        ),
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    _add_distill(commands)
    _add_export(commands)
    _add_report(commands)
    return parser


def _add_distill(commands):
    distill = commands.add_parser(
        "distill",
        help="train a student from a teacher",
        description=(
            "Trains the student to match the teacher: loss = (1 - alpha) * CE(y, student) + "
            "alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)). Keras prints a "
            "progress bar with `loss`, `student_loss` and `distillation_loss`. Training stops "
            "at the first NaN/Inf loss (then nothing is saved). Options not given are taken "
            "from --config, then from the defaults shown."
        ),
    )
    distill.add_argument("--teacher", required=True, metavar="T.keras", help="the trained teacher")
    distill.add_argument("--student", required=True, metavar="S.keras", help="the student to train")
    distill.add_argument(
        "--data", required=True, metavar="TRAIN.npz", help=f"training data, {_DATA_HELP}"
    )
    distill.add_argument("--val", metavar="VAL.npz", help="validation data, same format")
    distill.add_argument(
        "--out",
        required=True,
        metavar="OUT.keras",
        help="where to save the trained student (written atomically)",
    )
    defaults = DISTILL_DEFAULTS
    distill.add_argument(
        "--alpha", help=f"weight of the distillation term in [0, 1] (default {defaults['alpha']})"
    )
    distill.add_argument(
        "--temperature", help=f"softmax temperature T > 0 (default {defaults['temperature']})"
    )
    distill.add_argument("--epochs", help=f"number of epochs (default {defaults['epochs']})")
    distill.add_argument("--batch-size", help=f"batch size (default {defaults['batch_size']})")
    distill.add_argument(
        "--learning-rate", help=f"learning rate (default {defaults['learning_rate']})"
    )
    distill.add_argument(
        "--optimizer", help=f"one of {', '.join(OPTIMIZERS)} (default {defaults['optimizer']})"
    )
    distill.add_argument(
        "--distillation-loss",
        help=f"kl, soft_ce, mse or dkd (default {defaults['distillation_loss']})",
    )
    distill.add_argument("--seed", help=f"random seed (default {defaults['seed']})")
    distill.add_argument(
        "--config",
        metavar="CFG.yaml|CFG.json",
        help="YAML or JSON mapping of the options above (alpha, temperature, "
        "epochs, batch_size, learning_rate, optimizer, distillation_loss, "
        "seed); command-line options win",
    )
    distill.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard logs to DIR")
    distill.add_argument(
        "--backup-dir",
        metavar="DIR",
        help="back up the training state to DIR after each epoch and resume "
        "from it when the same command runs again",
    )
    distill.add_argument("--history", metavar="HISTORY.json", help="save the fit() history as JSON")
    distill.add_argument(
        "--verbose",
        default="1",
        metavar="{0,1,2}",
        help="0 silent, 1 progress bar, 2 one line per epoch (default 1)",
    )
    distill.add_argument(
        "--unsafe-allow-lambda",
        action="store_true",
        help="load models with Lambda layers (they can run arbitrary code; "
        "only for files you trust)",
    )
    distill.add_argument(
        "--recipe",
        action="store_true",
        help="run the safe recipe (keras_distill.distill): train the student "
        "alone with early stopping, distil copies of it on a transfer set "
        "labelled by the teacher for a few (alpha, T) candidates, and save "
        "whichever is better on validation (--val, else 20%% of --data); "
        "--alpha and --temperature, if given, are the only candidate; "
        f"defaults: epochs {RECIPE_DEFAULTS['epochs']}, batch size "
        f"{RECIPE_DEFAULTS['batch_size']}, learning rate "
        f"{RECIPE_DEFAULTS['learning_rate']}",
    )
    distill.add_argument(
        "--unlabeled",
        metavar="U.npz",
        help="with --recipe: inputs without labels (a .npz file with an array "
        "`x`) for the teacher to label; default: generated views of --data",
    )
    distill.add_argument(
        "--recipe-report",
        metavar="RECIPE.json",
        help="with --recipe: save what was tried and kept as JSON",
    )
    distill.set_defaults(handler=run_distill)


def _add_export(commands):
    export = commands.add_parser(
        "export",
        help="export a model to .tflite and check it",
        description=(
            "Converts a .keras model to .tflite, runs the file with LiteRT against the Keras "
            "model, and prints the parity report. The file is written atomically; with "
            "--max-abs-diff or --min-agreement it is not written when the check fails."
        ),
    )
    export.add_argument("model", metavar="MODEL.keras", help="the model to export")
    export.add_argument(
        "--out", required=True, metavar="OUT.tflite", help="the .tflite file to write"
    )
    export.add_argument(
        "--quantization",
        default="none",
        metavar="{" + ",".join(QUANTIZATIONS) + "}",
        help="post-training quantization (default none); int8 needs --calibration",
    )
    export.add_argument(
        "--calibration",
        metavar="DATA.npz",
        help="calibration inputs: a .npz file with an array `x` (`y` is not needed)",
    )
    export.add_argument(
        "--max-abs-diff", metavar="D", help="fail when max |keras - tflite| exceeds D"
    )
    export.add_argument(
        "--min-agreement", metavar="A", help="fail when the top-1 agreement is below A (in [0, 1])"
    )
    export.add_argument("--json", metavar="REPORT.json", help="also save the report as JSON")
    export.add_argument(
        "--generate",
        action="store_true",
        help="a keras_hub causal LM: write 'prefill' and 'decode' signatures with a key/value "
        "cache (quantization none, dynamic or float16)",
    )
    export.add_argument(
        "--max-length", metavar="N", help="with --generate: tokens a sequence holds"
    )
    export.add_argument("--prefill-length", metavar="N", help="with --generate: the longest prompt")
    export.add_argument(
        "--unsafe-allow-lambda",
        action="store_true",
        help="load models with Lambda layers (only for files you trust)",
    )
    export.set_defaults(handler=run_export)


def _add_report(commands):
    report = commands.add_parser(
        "report",
        help="compare a teacher and a student",
        description=(
            "Measures the teacher and the student on the same data: parameters, file size, "
            "accuracy, top-1 agreement, calibration error (ECE) and latency. Prints a table "
            "and writes report.json and accuracy_vs_size.png to --out-dir."
        ),
    )
    report.add_argument("--teacher", required=True, metavar="T.keras", help="the teacher")
    report.add_argument("--student", required=True, metavar="S.keras", help="the student")
    report.add_argument(
        "--data", required=True, metavar="TEST.npz", help=f"test data, {_DATA_HELP}"
    )
    report.add_argument(
        "--out-dir",
        default="keras_distill_report",
        metavar="DIR",
        help="folder for report.json and accuracy_vs_size.png (default keras_distill_report)",
    )
    report.add_argument(
        "--latency-repeats",
        default="9",
        metavar="N",
        help="timed calls per batch size; 0 skips timing (default 9)",
    )
    report.add_argument(
        "--unsafe-allow-lambda",
        action="store_true",
        help="load models with Lambda layers (only for files you trust)",
    )
    report.set_defaults(handler=run_report)


def main(argv=None):
    """Runs the command line; returns the exit code.

    Args:
        argv: Arguments without the program name. Defaults to `sys.argv[1:]`.

    Returns:
        `0` on success, `1` on failure, `2` on a usage error.
    """
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args) or 0
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
    verbose = int(_choice("--verbose", args.verbose, ("0", "1", "2")))
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
        metrics=[_accuracy(keras, y)],
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
    quantization = _choice("--quantization", args.quantization, QUANTIZATIONS)
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
    quantization = _choice("--quantization", args.quantization, ("none", "dynamic", "float16"))
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
        "temperature": lambda name, v: _number(name, v, minimum=0.0, exclusive=True),
        "epochs": lambda name, v: _number(name, v, minimum=1, integer=True),
        "batch_size": lambda name, v: _number(name, v, minimum=1, integer=True),
        "learning_rate": lambda name, v: _number(name, v, minimum=0.0, exclusive=True),
        "optimizer": lambda name, v: _choice(name, v, OPTIMIZERS),
        "distillation_loss": lambda name, v: _choice(name, v, ("kl", "soft_ce", "mse", "dkd")),
        "seed": lambda name, v: _number(name, v, minimum=0, integer=True),
    }
    for key, value in options.items():
        if isinstance(value, tuple):
            options[key] = checks[key](*value)
    return options


def _number(name, value, minimum=None, maximum=None, exclusive=False, integer=False):
    """Parses `value` as a number in range, or raises a `CliError` naming `name`."""
    if value is None:
        return None
    kind = "an integer" if integer else "a number"
    bounds = ""
    if minimum is not None and maximum is not None:
        bounds = f" in [{minimum}, {maximum}]"
    elif minimum is not None:
        bounds = f" {'>' if exclusive else '>='} {minimum}"
    message = f"`{name}` must be {kind}{bounds}. Received: {name}={value}"
    if isinstance(value, bool):
        raise CliError(message)
    try:
        number = int(value) if integer and not isinstance(value, float) else float(value)
    except (TypeError, ValueError):
        raise CliError(message) from None
    if integer and isinstance(value, float) and not value.is_integer():
        raise CliError(message)
    number = int(number) if integer else number
    if not math.isfinite(number):
        raise CliError(message)
    if minimum is not None and (number < minimum or (exclusive and number == minimum)):
        raise CliError(message)
    if maximum is not None and number > maximum:
        raise CliError(message)
    return number


def _choice(name, value, choices):
    if value not in choices:
        raise CliError(f"`{name}` must be one of {list(choices)}. Received: {name}={value}")
    return value


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


def _accuracy(keras, y):
    if y.ndim == 2 and y.shape[-1] > 1:
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
