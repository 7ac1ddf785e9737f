"""Install layout: FASTMOTION_NO_EXT=1 gives a pure-Python package whose torch backend works and whose
backends() explains the missing ones; the package ships fastmotion.kernels/train/bench from the top-level dirs."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # builds a wheel (`make test-fast` skips it)

PROBE = r"""
import sys
# Hide the developer's editable install so that only the wheel under test is importable.
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
import torch, fastmotion
from fastmotion.ops import backends, rvq_search
assert fastmotion.__file__.startswith(sys.argv[1]), fastmotion.__file__
status = backends()
assert not status["cpp"].available and "FASTMOTION_NO_EXT=1" in status["cpp"].reason, status["cpp"]
assert not status["cuda"].available and status["cuda"].reason, status["cuda"]
codes, q, r = rvq_search(torch.randn(20, 8), torch.randn(3, 5, 8))  # automatic choice: torch
assert codes.shape == (20, 3)
try:
    rvq_search(torch.randn(2, 8), torch.randn(1, 5, 8), backend="cpp")
except RuntimeError as err:
    assert "unavailable" in str(err) and "fastmotion._C" in str(err), err
else:
    raise AssertionError("cpp backend should be unavailable")
print("ok")
"""


@pytest.fixture(scope="module")
def pure_python_install(tmp_path_factory):
    out = tmp_path_factory.mktemp("noext")
    env = dict(os.environ, FASTMOTION_NO_EXT="1")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", str(ROOT),
                    "-w", str(out / "wheel")], check=True, env=env, capture_output=True)
    (wheel,) = (out / "wheel").glob("fastmotion-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(out / "site"),
                    str(wheel)], check=True, capture_output=True)
    return wheel, out / "site"


def test_pure_python_wheel_has_no_compiled_code(pure_python_install):
    wheel, _ = pure_python_install
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith((".so", ".pyd"))]
    for module in ("fastmotion/kernels/rvq.py", "fastmotion/train/__init__.py", "fastmotion/bench/rvq.py",
                   "fastmotion/ops/reference.py", "fastmotion/models/vq.py", "fastmotion/cli/__main__.py",
                   "fastmotion/pipelines/lifting.py"):
        assert module in names, module


def test_pure_python_install_works_and_explains(pure_python_install):
    _, site = pure_python_install
    env = dict(os.environ, PYTHONPATH=str(site))
    env.pop("FASTMOTION_BACKEND", None)
    done = subprocess.run([sys.executable, "-c", PROBE, str(site)], env=env, capture_output=True, text=True,
                          cwd=site)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
