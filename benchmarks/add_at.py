"""A top-k gradient's sparse values added into dense rows: in place against the scatter.

`keras_distill._add_at` adds `k + 1` values per row into `(rows, classes)`
float32 rows with `InplaceAdd` where that is safe, and with
`tensor_scatter_nd_add` otherwise. Each run makes fresh rows (`rows * 2`, as
the step makes its gradient) and adds the values one way; "rows only" makes
the rows and adds nothing. Alternated repeats in one process; the table gives
the minimum and the median, in ms, for several numbers of values per row (a
cost that does not grow with them is a copy of the rows).

    python benchmarks/add_at.py [--repeats 20] [--rows 2048] [--classes 8192]
"""

import argparse
import statistics
import time

import tensorflow as tf

from keras_distill import _add_at


def timed_variants(rows, per_row):
    indices = tf.random.stateless_uniform(
        [rows.shape[0], per_row], seed=(0, 1), maxval=rows.shape[1], dtype=tf.int32
    )
    amounts = tf.random.stateless_normal([rows.shape[0], per_row], seed=(0, 2))

    def variant(add):
        @tf.function
        def run(rows):
            added = add(rows * 2.0, indices, amounts)
            return tf.reduce_sum(added[:, :1])

        return run

    return {
        f"rows only, {per_row} per row": variant(lambda r, i, a: r),
        f"in place (InplaceAdd), {per_row} per row": variant(_add_at._in_place_add),
        f"scatter (tensor_scatter_nd_add), {per_row} per row": variant(_add_at._scatter_add),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--classes", type=int, default=8192)
    args = parser.parse_args(argv)
    rows = tf.random.stateless_normal([args.rows, args.classes], seed=(0, 0))
    runs = {}
    for per_row in (1, 33, 132):
        runs.update(timed_variants(rows, per_row))
    for run in runs.values():
        run(rows)  # trace
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run(rows).numpy()
            times[name].append((time.perf_counter() - start) * 1000.0)
    print(f"`({args.rows}, {args.classes})` float32 rows, {args.repeats} alternated repeats")
    print()
    print("| run | ms (min / median) |")
    print("|---|---|")
    for name, values in times.items():
        print(f"| {name} | {min(values):.1f} / {statistics.median(values):.1f} |")


if __name__ == "__main__":
    main()
