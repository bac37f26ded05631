"""`python -m pytest ARGS`, ending the process as soon as pytest has returned.

After the whole suite a test process holds several GiB of TensorFlow graphs and
Keras objects, and an ordinary interpreter exit frees them one by one (tens of
seconds). Everything pytest writes is flushed first; the exit code is pytest's.
Coverage runs (`python -m coverage run -m pytest`) use pytest directly, since
coverage writes its data at exit.
"""

import os
import sys
import time

import pytest

if __name__ == "__main__":
    started = time.monotonic()
    sys.path.insert(0, os.getcwd())  # As `python -m pytest` does.
    code = pytest.main(sys.argv[1:])
    print(f"pytest returned {time.monotonic() - started:.0f} s after this process started")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code))
