"""Seconds until the command line answers `--help` or a usage error, in fresh processes.

Compares, alternated in one run, the `keras-distill` launcher (`keras_distill_cli`,
which parses before loading TensorFlow) with `python -m keras_distill.cli`
(which imports the package, and so TensorFlow, first). Prints the minimum and
the median of `--repeats` runs of each.

    python benchmarks/cli_startup.py [--repeats 5]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = {
    "keras-distill --help (launcher)": [sys.executable, "keras_distill_cli.py", "--help"],
    "python -m keras_distill.cli --help": [sys.executable, "-m", "keras_distill.cli", "--help"],
    "keras-distill export (usage error, launcher)": [
        sys.executable,
        "keras_distill_cli.py",
        "export",
    ],
    "python -m keras_distill.cli export (usage error)": [
        sys.executable,
        "-m",
        "keras_distill.cli",
        "export",
    ],
}


def seconds(command):
    start = time.perf_counter()
    subprocess.run(
        command,
        cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            times[name].append(seconds(command))
    print(f"{args.repeats} alternated runs of each, fresh processes")
    print("| command | min s | median s |")
    print("|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {min(values):.2f} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
