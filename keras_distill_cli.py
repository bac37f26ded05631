"""The `keras-distill` command's launcher and argument parser; imports nothing heavy.

`import keras_distill` imports TensorFlow and Keras (several seconds). This
module lives beside the package, not inside it, so `keras-distill --help` and
usage errors answer without loading TensorFlow: `main` parses the arguments
here and only then loads `keras_distill.cli` to run the command. An interrupt
(Ctrl-C) while TensorFlow loads ends with the command line's usual one-line
error instead of a traceback.

The option names, choices and defaults below are the command line's one
source; `tests/test_cli.py` checks them against the library's (the loss
registry, the `Distiller`'s default `alpha` and `temperature`, and
`keras_distill.distill`'s defaults).
"""

import argparse
import sys

PROG = "keras-distill"
QUANTIZATIONS = ("none", "dynamic", "float16", "int8")
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
# The names `keras_distill.losses.get` accepts (tests check them against its registry).
LOSS_NAMES = (
    "decoupled_kd",
    "distillation_kl",
    "dkd",
    "forward_kl",
    "generalized_jsd",
    "jsd",
    "kl",
    "logit_mse",
    "mse",
    "reverse_kl",
    "skew_kl",
    "skew_reverse_kl",
    "soft_ce",
    "soft_target_cross_entropy",
    "total_variation",
    "tv",
)
VERBOSITIES = ("0", "1", "2")
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
        help=f"one of {', '.join(LOSS_NAMES)} (default {defaults['distillation_loss']})",
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


def main(argv=None):
    """Parses the arguments, then loads `keras_distill.cli` and runs the command.

    Returns its exit code: `0` on success, `1` on failure, `2` on a usage
    error (answered before TensorFlow loads), `130` when interrupted.
    """
    try:
        args = build_parser().parse_args(argv)
    except CliError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return error.code
    try:
        from keras_distill import cli
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
