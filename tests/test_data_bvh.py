"""BVH files: what fastmotion writes reads back as what was written (units, any body proportions, degenerate
bones, any frame rate, any orientation), in fastmotion's reader and in an independent minimal one; CMU, Mixamo
and CMU-like joint names; truncated files."""
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastmotion.data.bvh import UNITS, guess_units, parse_bvh, read_bvh, write_bvh
from fastmotion.data.synth import synth_clip
from fastmotion.motion import SMPL22
from helpers import minimal_bvh_positions, shared_dir

CASES = Path(__file__).parent / "data" / "cases"  # ../shared/cases, copied
SHARED = shared_dir()
CMU = SHARED / "data" / "cmu" if SHARED else None


def held(path) -> np.ndarray:
    """SMPL-22 joints of a file fastmotion wrote, by the independent reader (names are SMPL's, units metres)."""
    names, positions = minimal_bvh_positions(Path(path).read_text())
    return positions[:, [names.index(n) for n in SMPL22.names]]


def test_a_written_file_reads_back_in_metres_with_the_default_units(tmp_path):
    joints = np.load(CASES / "clip.npy")  # metres, 20 fps; read_bvh once assumed CMU units: 17.7x too small
    write_bvh(tmp_path / "c.bvh", joints, fps=20)
    assert np.abs(read_bvh(tmp_path / "c.bvh") - joints).max() < 1e-3
    assert np.abs(held(tmp_path / "c.bvh") - joints).max() < 1e-3
    for name, per_unit in UNITS.items():  # the same body in any unit is recognised
        assert guess_units(joints / per_unit)[0] == name
    assert np.abs(read_bvh(tmp_path / "c.bvh", units="cm") - joints / 100).max() < 1e-4
    with pytest.raises(ValueError, match="units must be"):
        read_bvh(tmp_path / "c.bvh", units="furlong")


def test_cmu_joint_names_read():
    joints = read_bvh(CASES / "cmu_like.bvh")  # LowerBack, Spine, Spine1, Neck, Neck1: no SMPL 'spine3' by name
    assert joints.shape[1:] == (22, 3) and np.isfinite(joints).all()
    spine = joints[0, [SMPL22.index(n) for n in ("pelvis", "spine1", "spine2", "spine3", "neck")], 1]
    assert (np.diff(spine) > 0).all()  # the spine rises from the pelvis to the neck
    height = joints[0, SMPL22.index("head"), 1] - joints[0, [SMPL22.index("left_ankle")], 1].min()
    assert 1.0 < height < 2.0  # CMU units recognised: an adult


def test_degenerate_bones_give_a_finite_file_and_the_joints_back(tmp_path):
    joints = np.load(CASES / "zero_foot.npy")  # each foot at its ankle
    write_bvh(tmp_path / "z.bvh", joints)
    assert "nan" not in (tmp_path / "z.bvh").read_text().lower()
    assert np.abs(read_bvh(tmp_path / "z.bvh") - joints).max() < 1e-3


def test_other_body_proportions_come_back(tmp_path):
    joints = np.load(CASES / "broad_hips.npy")  # hips 1.3x broader than SMPL's: once 120 mm off at the ankle
    held_back = write_bvh(tmp_path / "b.bvh", joints)
    assert np.abs(read_bvh(tmp_path / "b.bvh") - joints).max() < 1e-3
    assert np.abs(held_back - joints).max() < 1e-3


def _random_rotation(u):
    q = np.array([np.sqrt(1 - u[0]) * np.sin(2 * np.pi * u[1]), np.sqrt(1 - u[0]) * np.cos(2 * np.pi * u[1]),
                  np.sqrt(u[0]) * np.sin(2 * np.pi * u[2]), np.sqrt(u[0]) * np.cos(2 * np.pi * u[2])])
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), frames=st.integers(1, 60), fps=st.sampled_from([20, 24, 30, 60, 120]),
       scale=st.floats(0.5, 1.6), turn=st.tuples(*[st.floats(0, 1)] * 3), zero_foot=st.booleans())
def test_any_motion_written_reads_back(tmp_path, seed, frames, fps, scale, turn, zero_foot):
    joints = synth_clip(np.random.default_rng(seed))[0][:frames].astype(np.float64) * scale
    joints = joints @ _random_rotation(turn).T  # any orientation, even upside down
    if zero_foot:
        joints[:, SMPL22.index("left_foot")] = joints[:, SMPL22.index("left_ankle")]
    path = tmp_path / "m.bvh"
    write_bvh(path, joints, fps=fps)
    assert "nan" not in path.read_text().lower()
    assert np.abs(read_bvh(path, fps=fps, units="m") - joints).max() < 1e-3
    assert np.abs(held(path) - joints).max() < 1e-3  # an independent reader agrees


@pytest.mark.skipif(CMU is None, reason="../shared/data/cmu not found (set FASTMOTION_SHARED)")
def test_bvh_reads_cmu_and_round_trips(tmp_path):
    joints = read_bvh(CMU / "131_01.bvh")
    assert joints.shape == (166, 22, 3)  # 994 frames at 120 fps -> 20 fps
    span = joints[..., 1].max() - joints[..., 1].min()
    assert 1.3 < span < 1.6  # the README's 1.49 m includes end sites
    head, feet = joints[:, SMPL22.index("head"), 1], joints[:, list(SMPL22.feet), 1]
    assert (head > feet.max(1)).all()  # upright
    walked = np.linalg.norm(joints[-1, 0, [0, 2]] - joints[0, 0, [0, 2]])
    assert walked > 1.0
    write_bvh(tmp_path / "cmu.bvh", joints)
    np.testing.assert_allclose(read_bvh(tmp_path / "cmu.bvh"), joints, atol=2e-3)
    synthetic = synth_clip(np.random.default_rng(2))[0]
    write_bvh(tmp_path / "synth.bvh", synthetic)
    np.testing.assert_allclose(read_bvh(tmp_path / "synth.bvh"), synthetic, atol=1e-4)
    text = (CMU / "131_03.bvh").read_text().splitlines()
    (tmp_path / "cut.bvh").write_text("\n".join(text[:len(text) // 2]))
    with pytest.raises(ValueError, match=r"cut.bvh: truncated: the header promises 1102 frames"):
        parse_bvh(tmp_path / "cut.bvh")
    (tmp_path / "nohier.bvh").write_text("MOTION\nFrames: 1\nFrame Time: 0.1\n0 0 0\n")
    with pytest.raises(ValueError, match="no HIERARCHY"):
        parse_bvh(tmp_path / "nohier.bvh")


def test_a_motion_without_frames_or_time_is_refused_naming_the_file(tmp_path):
    text = (CASES / "cmu_like.bvh").read_text()
    for bad, message in (("Frames: 0", "at least one frame"), ("Frame Time: 0", "positive frame time"),
                         ("Frame Time: fast", "Frame Time 'fast' is not a number")):
        key = bad.split(":")[0]
        lines = [bad if line.startswith(key + ":") else line for line in text.splitlines()]
        (tmp_path / "bad.bvh").write_text("\n".join(lines))
        with pytest.raises(ValueError, match=f"bad.bvh.*{message}"):
            read_bvh(tmp_path / "bad.bvh")
