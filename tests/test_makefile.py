"""The Makefiles' recipes, read from `make -n` (a dry run: nothing is trained) on fake folders: `make real`, and
`make videomdm` with its research recipe in experiments/Makefile (train once, evaluate, resume)."""
import os
import shutil
import subprocess
import sys
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
    for run in ("plain-mdm", "videomdm"):
        stamp = next(i for i, line in enumerate(lines) if line == f"touch {demo}/videomdm/{run}.trained")
        lift = next(i for i, line in enumerate(lines) if "eval lift" in line and f"{run}.lift.json" in line)
        t2m = next(i for i, line in enumerate(lines) if "eval t2m" in line and f"videomdm/{run}/last.pt" in line)
        assert stamp < lift and stamp < t2m  # evaluated only once its training has ended
    assert "videomdm/table.py" in lines[-1]


def test_a_finished_run_is_not_trained_again_and_an_interrupted_one_is(demo):
    vm = demo / "videomdm"
    (vm / "plain-mdm").mkdir(parents=True)
    (vm / "plain-mdm" / "last.pt").touch()
    (vm / "plain-mdm.trained").touch()
    later(vm / "plain-mdm.trained", 2)  # finished after the teacher was built
    (vm / "videomdm").mkdir()
    (vm / "videomdm" / "last.pt").touch()  # a checkpoint, no stamp: interrupted
    lines = dry_run(demo, "videomdm")
    trains = [line for line in lines if "train mdm" in line]
    assert len(trains) == 1 and f"--out {vm}/videomdm " in trains[0]
    assert any("eval lift" in line and "plain-mdm.lift.json" in line for line in lines)


STUB = """import os, sys
from pathlib import Path
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
out = Path(sys.argv[sys.argv.index("--out") + 1])
out.mkdir(parents=True, exist_ok=True)
(out / "last.pt").touch()
sys.exit(int(os.environ.get("STUB_EXIT", "0")))
"""


def test_an_interrupted_run_resumes_with_the_same_arguments_only(demo, tmp_path):
    """The training recipe itself, run by make with a stand-in for `fastmotion train mdm` that records its
    arguments, writes a checkpoint and exits as told (1: killed mid-run)."""
    stub = tmp_path / "stub.py"
    stub.write_text(STUB)
    log = tmp_path / "calls.txt"
    vm = demo / "videomdm"

    def make(*extra, exit_code=0):
        env = {**os.environ, "STUB_LOG": str(log), "STUB_EXIT": str(exit_code)}
        return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT / "experiments"), f"DEMO={demo}",
                               f"FM={sys.executable} {stub}", *extra, f"{vm}/plain-mdm.trained"],
                              capture_output=True, text=True, env=env)

    assert make(exit_code=1).returncode != 0  # killed: no stamp, the run's arguments kept
    assert not (vm / "plain-mdm.trained").exists() and (vm / "plain-mdm.interrupted").exists()
    assert make("VIDEOMDM_SEED=3", exit_code=1).returncode != 0  # other arguments: started afresh
    done = make("VIDEOMDM_SEED=3")
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert [c.endswith("--resume") for c in calls] == [False, False, True]
    assert "--seed 0" in calls[0] and "--seed 3" in calls[1] and "--seed 3" in calls[2]
    assert (vm / "plain-mdm.trained").exists() and not (vm / "plain-mdm.interrupted").exists()
    later(demo / "synth2d" / "teacher" / "report.json", 5)  # a new teacher: the finished run trains afresh
    assert make("VIDEOMDM_SEED=3").returncode == 0
    assert not log.read_text().splitlines()[-1].endswith("--resume")


def test_make_real_trains_the_three_methods_on_the_given_folder_and_tabulates_them(tmp_path):
    planned = dry_run(tmp_path, "real", f"REAL={tmp_path}/mocap", f"REAL_OUT={tmp_path}/r")
    lines = "\n".join(planned).replace("\\\n", " ").splitlines()  # one line per command
    order = ["data render --from " + f"{tmp_path}/mocap", "train prior", "train mlrq", "eval lift --checkpoint",
             "data teacher", "train mdm", "eval lift --model mdm", "eval table", "train mvlift",
             "eval lift --model mvlift", "eval-mlrq-mv.json", "eval table --protocol"]
    at = [next(i for i, line in enumerate(lines) if step in line) for step in order]
    assert at == sorted(at), lines
    assert all(f"{tmp_path}/r/" in lines[i] for i in at)
    assert "--root teacher" in lines[at[5]] and "eval-mlrq.json" in lines[at[7]] and "eval-videomdm.json" in lines[at[7]]
    assert "--data " + f"{tmp_path}/r/real2d" in lines[at[8]] and "--stride 11 --limit 50" in lines[at[9]]


def test_make_real_t2m_trains_text_to_motion_on_the_given_folder(tmp_path):
    lines = "\n".join(dry_run(tmp_path, "real-t2m", f"REAL={tmp_path}/mocap", f"REAL_OUT={tmp_path}/r"))
    lines = lines.replace("\\\n", " ").splitlines()
    order = ["data render --from " + f"{tmp_path}/mocap", "train prior", "train mlrq", "train evaluator",
             "train mask", "train res", "eval t2m", "sample --models", "t2m.gif"]
    at = [next(i for i, line in enumerate(lines) if step in line) for step in order]
    assert at == sorted(at), lines
    assert all(f"{tmp_path}/r/" in lines[i] for i in at)
    assert lines[at[0]].startswith(f"test -f {tmp_path}/r/real2d/meta.json ||")  # `make real`'s 2D is reused
    assert lines[at[2]].startswith(f"test -f {tmp_path}/r/mlrq/last.pt ||")  # and its ML-RQ
    assert "--json " + f"{tmp_path}/r/t2m.json" in lines[at[6]] and "as if exhausted" in lines[at[7]]


def test_make_demo_detector_renders_imports_trains_and_tabulates(tmp_path):
    planned = dry_run(tmp_path, "demo-detector", f"CMU={tmp_path}/cmu")
    lines = "\n".join(planned).replace("\\\n", " ").splitlines()
    order = ["data render --from " + f"{tmp_path}/synth", "data import", "train prior", "train mlrq",
             "eval lift --checkpoint " + f"{tmp_path}/detector/mlrq", "data bvh --from " + f"{tmp_path}/cmu",
             "eval table"]
    at = [next(i for i, line in enumerate(lines) if step in line) for step in order]
    assert at == sorted(at), lines
    assert "--layout coco17 --noise detector --no-camera" in lines[at[0]]


def test_make_mvlift_coco_imports_natively_trains_and_lifts(tmp_path):
    lines = "\n".join(dry_run(tmp_path, "mvlift-coco")).replace("\\\n", " ").splitlines()
    order = ["data render --from " + f"{tmp_path}/synth", "data import", "train mvlift", "eval lift --model mvlift",
             "eval table"]
    at = [next(i for i, line in enumerate(lines) if step in line) for step in order]
    assert at == sorted(at), lines
    assert "--layout coco17" in lines[at[0]] and "--noise" not in lines[at[0]] and "--native" in lines[at[1]]


def test_make_compare_builds_mvlift_part_2_and_tabulates_the_methods_on_the_same_clips(tmp_path):
    (tmp_path / "mlrq").mkdir()
    (tmp_path / "mlrq" / "last.pt").touch()  # `make demo`'s, the VideoMDM teacher's lifter
    lines = "\n".join(dry_run(tmp_path, "compare")).replace("\\\n", " ").splitlines()
    order = ["train mvlift --data", "data teacher", "train mdm", "data mvlift --checkpoint", "train mvlift-mv",
             "eval lift --checkpoint " + f"{tmp_path}/mlrq", "eval lift --model mdm", "eval-stage2.json",
             "eval-feedforward.json", "eval table"]
    at = [next(i for i, line in enumerate(lines) if step in line) for step in order]
    assert at == sorted(at), lines
    assert all("--stride 4 --limit 50" in lines[i] for i in at[5:9])
    assert f"{tmp_path}/compare/mvlift-mv/last.pt" in lines[at[8]] and "--limit 250" in lines[at[3]]
    assert "--root teacher" in lines[at[2]]
    assert all(f"{tmp_path}/compare/eval-{r}.json" in lines[at[9]]
               for r in ("mlrq", "videomdm", "stage2", "feedforward"))
