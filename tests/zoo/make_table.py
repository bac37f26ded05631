"""Writes the table of `docs/models.md` from a zoo run on both Keras generations.

Usage (from the repository root):

    python tests/zoo/make_table.py            # runs the zoo twice, then writes the table
    python tests/zoo/make_table.py --no-run   # writes it from the last run's results

Each run sets `ZOO_RESULTS`, so `tests/zoo/conftest.py` writes what each
architecture showed working to `<results>/<generation>.json`. Only what a
passing test recorded appears in the table.
"""

import argparse
import json
import os
import subprocess
import sys

GENERATIONS = ("keras3", "tf_keras")
COLUMNS = (
    "teacher",
    "KD",
    "features",
    "attention",
    "XLA",
    "reload",
    "float32 .tflite",
    "int8 .tflite",
    "prune",
    "QAT",
    "compress()",
)
START, END = "<!-- zoo table: start -->", "<!-- zoo table: end -->"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(results):
    for generation in GENERATIONS:
        env = dict(
            os.environ,
            ZOO_RESULTS=results,
            PYTHONPATH=ROOT,
            TF_USE_LEGACY_KERAS="1" if generation == "tf_keras" else "0",
        )
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-m", "zoo", "tests/zoo"],
            cwd=ROOT,
            env=env,
            check=False,
        )


def load(results):
    found = {}
    for generation in GENERATIONS:
        path = os.path.join(results, f"{generation}.json")
        if os.path.exists(path):
            with open(path) as stream:
                found[generation] = json.load(stream)
    return found


def cell(found, architecture, feature):
    where = [g for g in GENERATIONS if feature in found.get(g, {}).get(architecture, [])]
    return "both" if len(where) == 2 else (where[0] if where else "")


def table(found):
    architectures = sorted({name for results in found.values() for name in results})
    lines = ["| architecture | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name in architectures:
        lines.append(f"| {name} | " + " | ".join(cell(found, name, c) for c in COLUMNS) + " |")
    return "\n".join(lines)


def write(document, text):
    with open(document) as stream:
        content = stream.read()
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    with open(document, "w") as stream:
        stream.write(f"{head}{START}\n{text}\n{END}{tail}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=os.path.join(ROOT, "outputs", "zoo"))
    parser.add_argument("--output", default=os.path.join(ROOT, "docs", "models.md"))
    parser.add_argument("--no-run", action="store_true", help="use the last run's results")
    args = parser.parse_args()
    if not args.no_run:
        run(args.results)
    write(args.output, table(load(args.results)))


if __name__ == "__main__":
    main()
