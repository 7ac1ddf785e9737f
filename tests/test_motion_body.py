"""Valid bodies (fastmotion.motion.body): one skeleton per clip near an adult's proportions, feet on the floor."""
import numpy as np
import pytest
import torch

from fastmotion.data.synth import synth_clip
from fastmotion.errors import MotionError
from fastmotion.motion.body import (LONG_BONES, OTHER_RANGE, REFERENCE_BONES, bone_lengths, clip_skeleton,
                                     on_floor, rigid_body)
from fastmotion.motion.rotations import qbetween, qrot
from fastmotion.motion.skeleton import COCO17, SMPL22

FEET = list(SMPL22.feet)


def clips(n, seed=0):
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(synth_clip(rng)[0]).double() for _ in range(n)]


def broken(joints, seed=0):
    """Limb vectors scaled by a random factor per frame and bone (0.7-1.3), the left upper arm 5x too long."""
    g = torch.Generator().manual_seed(seed)
    root, limbs = joints[:, 0], joints[:, 1:] - joints[:, list(SMPL22.parents[1:])]
    limbs = limbs * (0.7 + 0.6 * torch.rand(limbs.shape[:2], generator=g, dtype=joints.dtype))[..., None]
    limbs[:, SMPL22.index("left_elbow") - 1] *= 5
    out = [root]
    for j, p in enumerate(SMPL22.parents[1:], start=1):
        out.append(out[p] + limbs[:, j - 1])
    return torch.stack(out, 1)


def test_a_real_body_is_unchanged():
    for joints in clips(6):
        torch.testing.assert_close(rigid_body(joints), joints, atol=1e-6, rtol=0)  # float32 data


def test_broken_bones_are_held_at_one_plausible_skeleton():
    for i, joints in enumerate(clips(6)):
        bad = broken(joints, i) * 3.0  # any unit
        fixed = rigid_body(bad)
        lengths = bone_lengths(fixed)
        assert torch.allclose(lengths, lengths[:1].expand_as(lengths), rtol=1e-6)  # one skeleton over the clip
        long = list(LONG_BONES)
        size = (lengths[0, long] / REFERENCE_BONES[long]).quantile(0.5)
        ratio = lengths[0] / (size * REFERENCE_BONES)
        assert ratio[long].max() / ratio[long].min() <= 1.25 / 0.75 + 1e-9  # one size fits them: the 5x arm is gone
        assert ratio.min() >= 0.8 * OTHER_RANGE[0] and ratio.max() <= 1.25 * OTHER_RANGE[1]
        before = bad[:, 1:] - bad[:, list(SMPL22.parents[1:])]
        after = fixed[:, 1:] - fixed[:, list(SMPL22.parents[1:])]
        cos = torch.nn.functional.cosine_similarity(before, after, dim=-1)
        assert cos.min() > 1 - 1e-9  # every limb keeps its direction
        torch.testing.assert_close(fixed[:, 0], bad[:, 0])  # and the root its trajectory


def test_a_mocap_skeleton_with_its_own_torso_is_unchanged():
    """Bandai-2's skeleton: spine segments 0.35-1.5x SMPL's, arms and legs within 10% (docs/real-data.md)."""
    joints = clips(1)[0]
    root, limbs = joints[:, 0], joints[:, 1:] - joints[:, list(SMPL22.parents[1:])]
    scale = torch.ones(21, dtype=joints.dtype)
    for name, factor in (("spine1", 1.46), ("spine2", 0.35), ("head", 0.64), ("left_shoulder", 0.46),
                         ("right_shoulder", 0.46), ("left_knee", 1.05), ("left_wrist", 0.91)):
        scale[SMPL22.index(name) - 1] = factor
    out = [root]
    for j, p in enumerate(SMPL22.parents[1:], start=1):
        out.append(out[p] + limbs[:, j - 1] * scale[j - 1])
    mocap = torch.stack(out, 1)
    torch.testing.assert_close(rigid_body(mocap), mocap, atol=1e-6, rtol=0)


def test_other_skeletons_keep_their_median_lengths():
    joints = torch.randn(30, COCO17.num_joints, 3, dtype=torch.float64)
    lengths = clip_skeleton(joints, COCO17)
    torch.testing.assert_close(lengths, bone_lengths(joints, COCO17).median(0).values)
    assert torch.allclose(bone_lengths(rigid_body(joints, skeleton=COCO17), COCO17), lengths.expand(30, -1))


def test_bad_motions_are_refused_by_name():
    joints = clips(1)[0].clone()
    joints[7, SMPL22.index("left_wrist"), 1] = float("nan")
    with pytest.raises(MotionError, match="frame 7, joint left_wrist"):
        rigid_body(joints)
    with pytest.raises(ValueError, match=r"\[T, 22, 3\]"):
        rigid_body(joints[:, :21])
    with pytest.raises(ValueError, match="length zero"):
        rigid_body(torch.zeros(5, 22, 3))
    with pytest.raises(ValueError, match=r"lengths must be \[21\]"):
        rigid_body(clips(1)[0], lengths=torch.ones(20))
    with pytest.raises(ValueError, match=r"finite lengths >= 0"):
        rigid_body(clips(1)[0], lengths=torch.full((21,), -1.0))


def test_on_floor_leaves_a_grounded_motion_nearly_alone():
    for joints in clips(8):
        assert (on_floor(joints) - joints)[..., 1].abs().mean() < 0.01  # metres


def first_clip(action, seed):
    """The first synthetic clip of `action` alone (joints [T, 22, 3], metres, y up) from generator `seed`."""
    rng = np.random.default_rng(seed)
    while True:
        joints, _, label = synth_clip(rng)
        if label == action:
            return torch.from_numpy(joints).double()


def test_on_floor_grounds_a_floating_tilted_walk():
    joints = first_clip("walk", 3)
    tilt = qbetween(joints.new_tensor([0.0, 1.0, 0.0]), joints.new_tensor([0.0, 0.97, 0.24]))  # 14 degrees
    moved = qrot(tilt, joints) + joints.new_tensor([0.0, 0.3, 0.0])  # and floating 30 cm up
    fixed = on_floor(moved)
    assert fixed[..., 1].min() >= -1e-9
    assert fixed[:, FEET, 1].amin(-1).max() < 0.03  # a walk has a foot on the floor in every frame (metres)
    assert moved[:, FEET, 1].amin(-1).abs().max() > 0.3  # (it was off by up to 45 cm)


def test_on_floor_keeps_a_jumps_flight():
    joints = first_clip("jump", 0)
    fixed = on_floor(joints + joints.new_tensor([0.0, 0.4, 0.0]))
    flight = joints[:, FEET, 1].amin(-1).max()
    assert flight > 0.1
    assert abs(fixed[:, FEET, 1].amin(-1).max() - flight) < 0.02


def test_lifts_are_held_at_one_skeleton_and_a_diverged_one_is_left_out_by_name():
    """`lift_bodies`, what `fastmotion lift` and `eval lift` go through, on a lifter that returns broken bodies."""
    from fastmotion.pipelines.lifting import Clip2D, Lifter, lift_bodies

    truth = clips(2)

    class Broken(Lifter):
        def lift(self, clips, progress=None):
            out = {c.name: broken(t, i) for i, (c, t) in enumerate(zip(clips, truth))}
            out["nan"] = torch.full_like(truth[0], float("nan"))
            return out

    batch = [Clip2D(n, torch.zeros(len(t), 22, 2)) for n, t in zip(("a", "b"), truth)] + [Clip2D("nan", None)]
    left_out = []
    held = lift_bodies(Broken(), batch, left_out=left_out)
    assert sorted(held) == ["a", "b"] and left_out == ["nan: left out (the lift holds NaN or inf)"]
    for joints in held.values():
        lengths = bone_lengths(joints)
        assert torch.allclose(lengths, lengths[:1].expand_as(lengths), rtol=1e-6)
    free = lift_bodies(Broken(), batch, rigid=False)
    torch.testing.assert_close(free["a"], broken(truth[0], 0))  # --free-bones: as the network gave them
