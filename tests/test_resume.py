import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import make_data
from helpers import make_mlp
from helpers import subprocess_env
from resume_run import train

from keras_distill import saving

SCRIPT = os.path.join(os.path.dirname(__file__), "resume_run.py")


def read_epochs(path):
    with open(path) as stream:
        return [int(line) for line in stream.read().split()]


@pytest.mark.subprocess
@pytest.mark.slow  # Three trainings, two of them in fresh processes: about 40 s.
def test_fit_killed_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path, trained_teacher):
    folder = str(tmp_path)
    saving.save_model(trained_teacher, os.path.join(folder, "teacher.keras"))
    saving.save_model(make_mlp(8, "student", seed=2), os.path.join(folder, "student.keras"))
    x, y = make_data(128, seed=5)
    np.savez(os.path.join(folder, "train.npz"), x=x, y=y)
    backup, log, marker = (
        os.path.join(folder, name) for name in ("backup", "epochs.log", "marker")
    )

    killed = subprocess.Popen(
        [sys.executable, SCRIPT, folder, backup, log, os.path.join(folder, "never.npz"), marker],
        env=subprocess_env(),
    )
    try:
        deadline = time.monotonic() + 240
        while not os.path.exists(marker) and killed.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert os.path.exists(marker), f"the run ended or hung before the marker: {killed.poll()}"
        os.kill(killed.pid, signal.SIGKILL)
    finally:
        killed.kill()
        killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert read_epochs(log) == [0, 1, 2]
    assert os.listdir(backup)  # The state saved at the end of epoch 1 survived the kill.

    os.remove(log)
    resumed_path = os.path.join(folder, "resumed.npz")
    subprocess.run(
        [sys.executable, SCRIPT, folder, backup, log, resumed_path],
        check=True,
        timeout=300,
        env=subprocess_env(),
    )
    assert read_epochs(log) == [2, 3]  # Resumed at the interrupted epoch, not from scratch.
    with np.load(resumed_path) as archive:
        resumed = [archive[f"arr_{i}"] for i in range(len(archive.files))]

    uninterrupted = train(folder, os.path.join(folder, "backup2"), os.path.join(folder, "log2"))
    initial = make_mlp(8, "initial", seed=2).get_weights()
    assert not np.allclose(uninterrupted[0], initial[0])
    assert len(resumed) == len(uninterrupted)
    for expected, actual in zip(uninterrupted, resumed):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
