"""Launcher of the `keras-distill` command: Ctrl-C while TensorFlow loads ends without a traceback.

`import keras_distill` imports TensorFlow and Keras (several seconds) before
any command-line code can run, so `keras_distill.cli.main` cannot catch an
interrupt that arrives then. This module imports nothing heavy itself and
turns that interrupt into the command line's usual one-line error.
"""

import sys

EXIT_INTERRUPTED = 130


def main(argv=None):
    """Loads `keras_distill.cli` and runs it; returns its exit code (130 when interrupted)."""
    try:
        from keras_distill import cli
    except KeyboardInterrupt:
        print("keras-distill: error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
