"""`make videomdm`'s dependency graph, read from `make -n` (a dry run: nothing is trained) on a fake demo folder."""
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def dry_run(demo: Path, *goals: str) -> list[str]:
    # VENV points at a folder whose install stamp is newer than setup.py, so the dry run plans no install
    venv = demo / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    (venv / "bin" / "python").touch()
    (venv / ".installed").touch()
    done = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), f"DEMO={demo}", f"VENV={venv}", *goals],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.fixture
def demo(tmp_path):
    (tmp_path / "mlrq").mkdir()
    (tmp_path / "mlrq" / "last.pt").touch()
    (tmp_path / "synth2d" / "teacher").mkdir(parents=True)
    report = tmp_path / "synth2d" / "teacher" / "report.json"
    report.touch()
    later(report, 1)  # newer than the ML-RQ: the teacher is up to date
    return tmp_path


def later(path: Path, seconds: float) -> None:
    os.utime(path, (time.time() + seconds,) * 2)


def test_each_run_trains_once_then_is_evaluated_twice(demo):
    lines = dry_run(demo, "videomdm")
    trains = [i for i, line in enumerate(lines) if "train mdm" in line]
    assert len(trains) == 2 and not any("data teacher" in line for line in lines)
    for run in ("teacher", "videomdm"):
        stamp = next(i for i, line in enumerate(lines) if line == f"touch {demo}/videomdm/{run}.trained")
        lift = next(i for i, line in enumerate(lines) if "eval lift" in line and f"{run}.lift.json" in line)
        t2m = next(i for i, line in enumerate(lines) if "eval t2m" in line and f"videomdm/{run}/last.pt" in line)
        assert stamp < lift and stamp < t2m  # evaluated only once its training has ended
    assert "videomdm_table.py" in lines[-1]


def test_a_finished_run_is_not_trained_again_and_an_interrupted_one_is(demo):
    vm = demo / "videomdm"
    (vm / "teacher").mkdir(parents=True)
    (vm / "teacher" / "last.pt").touch()
    (vm / "teacher.trained").touch()
    later(vm / "teacher.trained", 2)  # finished after the teacher was built
    (vm / "videomdm").mkdir()
    (vm / "videomdm" / "last.pt").touch()  # a checkpoint, no stamp: interrupted
    lines = dry_run(demo, "videomdm")
    trains = [line for line in lines if "train mdm" in line]
    assert len(trains) == 1 and f"--out {vm}/videomdm " in trains[0]
    assert any("eval lift" in line and "teacher.lift.json" in line for line in lines)
