"""MVLift part 2: the multi-view data (stage 3), the multi-view diffusion model (stage 4), feed-forward lifting."""
import json

import numpy as np
import pytest
import torch
from helpers import fastmotion_cli, synthetic_clip

from fastmotion.diffusion import GaussianDiffusion
from fastmotion.models.multiview import MultiViewDenoiser, MultiViewDenoiserConfig
from fastmotion.motion import multiview
from fastmotion.motion.skeleton import SMPL22
from fastmotion.pipelines.mvlift import recover_3d
from fastmotion.pipelines.mvlift_data import RingSettings, reprojection_error, to_ring
from fastmotion.pipelines.mvlift_feedforward import FeedForwardConfig, sample_other_views

TINY = MultiViewDenoiserConfig(joints=22, views=4, width=32, layers=2, heads=2, ff=64, dropout=0.0, max_frames=40,
                               diffusion_steps=20)


def _inputs(batch=2, frames=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, frames, 22, 2, generator=g), torch.randn(batch, frames, 22, 2, generator=g),
            torch.tensor([3, 11])[:batch], torch.ones(batch, frames, dtype=torch.bool))


def test_cross_view_attention_mixes_views():
    torch.manual_seed(0)
    model = MultiViewDenoiser(TINY).eval()
    x, ref, t, mask = _inputs()
    other = x.clone()
    other[:, 1] += torch.randn(22, 2)  # change view 2's input only
    a, b = model(x, ref, t, mask), model(other, ref, t, mask)
    for view in (0, 2):  # the other views' outputs change with it
        assert (a[:, view] - b[:, view]).abs().max() > 1e-4
    assert torch.equal(a[1:], model(x[1:], ref[1:], t[1:], mask[1:])) or \
        torch.allclose(a[1:], model(x[1:], ref[1:], t[1:], mask[1:]), atol=1e-5)  # clips do not mix


def test_temporal_attention_stays_within_a_view_and_cross_view_within_a_frame():
    torch.manual_seed(0)
    block = MultiViewDenoiser(TINY).blocks[0].eval()
    h = torch.randn(2, 3, 10, 32)
    changed = h.clone()
    changed[:, 1, 4] += torch.randn(32)  # view 1, frame 4 (not a constant: LayerNorm would remove it)
    time_a, time_b = block.temporal(h, None), block.temporal(changed, None)
    assert torch.equal(time_a[:, [0, 2]], time_b[:, [0, 2]])  # no other view sees it
    assert (time_a[:, 1, 7] - time_b[:, 1, 7]).abs().max() > 1e-4  # other frames of the same view do
    views_a, views_b = block.cross_view(h), block.cross_view(changed)
    frames = [f for f in range(10) if f != 4]
    assert torch.equal(views_a[:, :, frames], views_b[:, :, frames])  # no other frame sees it
    assert (views_a[:, 0, 4] - views_b[:, 0, 4]).abs().max() > 1e-4  # other views of the same frame do


def test_padded_frames_are_ignored_and_shapes_are_checked():
    torch.manual_seed(0)
    model = MultiViewDenoiser(TINY).eval()
    x, ref, t, mask = _inputs()
    mask[:, 7:] = False
    other_x, other_ref = x.clone(), ref.clone()
    other_x[:, :, 7:], other_ref[:, 7:] = 50.0, -50.0
    a, b = model(x, ref, t, mask), model(other_x, other_ref, t, mask)
    assert torch.allclose(a[:, :, :7], b[:, :, :7], atol=1e-5)
    with pytest.raises(ValueError, match=r"x must be \[B, 3, T, 22, 2\]"):
        model(x[:, :2], ref, t, mask)
    with pytest.raises(ValueError, match="reference must be"):
        model(x, ref[:, :5], t, mask)
    with pytest.raises(ValueError, match="max_frames"):
        model(torch.zeros(1, 3, 41, 22, 2), torch.zeros(1, 41, 22, 2), t[:1])


def _camera_motion(frames=12, depth=6.0):
    """A real motion in a camera's frame (y down), hip centre of the first frame at `depth` metres on the
    optical axis, float64 [1, T, 22, 3]."""
    joints = synthetic_clip(3, frames) * torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)
    hip = SMPL22.root_position(joints[:1])[0]
    return (joints - hip + torch.tensor([0.0, 0.0, depth], dtype=torch.float64))[None]


@pytest.mark.parametrize("focal", [1.0, 7.5])
def test_ring_views_are_exact_and_triangulate_back_to_1e5(focal):
    """Stage 3's views: view 0 is the observed image, the first frame's hip images at the origin in every view,
    and triangulating the exact views over the ring (as feed-forward lifting does) recovers the 3D to 1e-5."""
    joints = _camera_motion()
    f = torch.tensor([focal], dtype=torch.float64)
    observed = joints[..., :2] / joints[..., 2:] * focal
    ring = RingSettings(views=4, distance=2.8)
    views, world = to_ring(joints, f, SMPL22.root_position(joints[:, 0]), ring)
    assert views.shape == (4, 1, 12, 22, 2) and world.shape == (1, 12, 22, 3)
    assert torch.allclose(views[0], observed, atol=1e-12)
    hips = SMPL22.root_position(views[:, 0, 0])  # [V, 2]
    assert hips.abs().max() < 1e-12
    mask = torch.ones(1, 12, dtype=torch.bool)
    assert float(reprojection_error(joints * 0.5, observed, mask, f)) < 1e-12  # scale about the camera: same image
    cams = multiview.ring_cameras(4, 2.8, dtype=torch.float64)
    in_camera = world @ cams.R[0].T + cams.t[0]
    recovered = recover_3d(views, FeedForwardConfig(views=4, distance=2.8, refine_iterations=0), f)
    assert (recovered - in_camera).abs().max() < 1e-5
    refined = recover_3d(views, FeedForwardConfig(views=4, distance=2.8, refine_iterations=20), f)
    assert (refined - in_camera).abs().max() < 1e-5
    assert torch.allclose(in_camera / in_camera[0, 0, 0, 2], joints / joints[0, 0, 0, 2], atol=1e-9)


def test_reprojection_error_flags_poor_and_behind_camera_windows():
    joints = _camera_motion()
    f = torch.ones(1, dtype=torch.float64)
    observed = joints[..., :2] / joints[..., 2:]
    mask = torch.ones(1, 12, dtype=torch.bool)
    assert float(reprojection_error(joints, observed + 0.1, mask, f)) == pytest.approx(0.1 * 2 ** 0.5)
    behind = joints.clone()
    behind[0, 5, 3, 2] = -1.0
    assert reprojection_error(behind, observed, mask, f).isinf().all()
    mask[0, 5] = False  # not on a real frame: ignored
    assert float(reprojection_error(behind, observed, mask, f)) < 1e-12


def _toy_data(count=48, frames=8, seed=0):
    """Exact ring views of randomly turned real motions: (reference [N, T, 22, 2], others [N, 3, T, 22, 2])."""
    refs, others = [], []
    ring = RingSettings(views=4, distance=2.8)
    for k in range(count):
        joints = _camera_motion(frames, depth=4.0 + k % 5)
        angle = (k / count - 0.5) * 2 * np.pi / 3  # turn the body about the vertical, within +-60 degrees
        c, s = np.cos(angle), np.sin(angle)
        R = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)
        hip = SMPL22.root_position(joints[:, 0])
        joints = (joints - hip[:, None, None]) @ R.T + hip[:, None, None]
        observed = joints[..., :2] / joints[..., 2:]
        scale = (observed[:, 0].amax(1) - observed[:, 0].amin(1)).amax(-1) / 2
        views, _ = to_ring(joints, 1 / scale, SMPL22.root_position(joints[:, 0]), ring)
        refs.append(views[0, 0])
        others.append(views[1:, 0])
    return torch.stack(refs).float(), torch.stack(others).float()


def test_the_multiview_model_learns_a_toy_mapping():
    """On exact ring views of 48 turned motions, training drives the other views' x0 error well below the
    baseline of copying the observed view into every other view, and sampling gives views closer to the truth."""
    from fastmotion.train.mvlift import multiview_losses

    torch.manual_seed(0)
    ref, others = _toy_data()
    mask = torch.ones(len(ref), ref.shape[1], dtype=torch.bool)
    focal = torch.ones(len(ref))
    model = MultiViewDenoiser(TINY)
    diffusion = GaussianDiffusion(TINY.diffusion_steps)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(400):
        loss = multiview_losses(model, diffusion, ref, others, mask, focal, g)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    model.eval()
    copy_error = float(((ref[:, None] - others) ** 2).mean())
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    views = sample_other_views(model, ref, mask, focal, torch.Generator().manual_seed(1), "ddim", 10)
    assert views.shape == (4, 48, 8, 22, 2) and torch.equal(views[0], ref)
    sampled_error = float(((views[1:].transpose(0, 1) - others) ** 2).mean())
    assert sampled_error < 0.3 * copy_error, (sampled_error, copy_error)


def test_feedforward_config_checks():
    with pytest.raises(ValueError, match="sampler"):
        FeedForwardConfig(sampler="euler")
    with pytest.raises(ValueError, match="--mvlift-mode applies to stage-1"):
        FeedForwardConfig(mode="stage1")
    with pytest.raises(ValueError, match="threshold"):
        RingSettings(threshold=0)


def test_cli_data_resumes_train_and_lift(data2d, tmp_path):
    """Real subprocess runs: `data mvlift` writes the multi-view folder and, run again (also after a crash
    mid-clip), redoes no clip; another stage-1 checkpoint is refused by name, so is a 2D folder as training data;
    `train mvlift-mv` trains and `lift`/`eval lift --model mvlift` lift with its checkpoint."""
    stage1 = tmp_path / "stage1"
    args = ["--batch-size", 4, "--length", 16, "--eval-every", 4, "--ckpt-every", 4]
    fastmotion_cli("train", "mvlift", "--data", data2d, "--out", stage1, "--steps", 4, *args)
    mv = tmp_path / "mv"
    data_args = ["--checkpoint", stage1 / "last.pt", "--data", data2d, "--out", mv, "--iterations", 2,
                 "--threshold", 100]
    first = fastmotion_cli("data", "mvlift", *data_args, "--limit", 3, "--render")
    assert "3 clips done" in first.stdout
    assert len(list((mv / "preview").glob("*.gif"))) == 3
    meta = json.loads((mv / "meta.json").read_text())
    assert meta["stage1"]["skeleton"] == "smpl22" and meta["ring"] == {"views": 4, "distance": 2.8, "threshold": 100}
    written = {p.name: p.stat().st_mtime_ns for p in (mv / "windows").glob("*.npz")}
    lines = (mv / "done.jsonl").read_text().splitlines()
    (mv / "done.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:10])  # killed while writing clip 3
    again = fastmotion_cli("data", "mvlift", *data_args, "--limit", 5)
    assert "5 clips done" in again.stdout
    done = [json.loads(line)["clip"] for line in (mv / "done.jsonl").read_text().splitlines() if line.endswith("}")]
    assert len(done) == len(set(done)) == 5
    for name, mtime in written.items():  # the two clips completed before the crash were not redone
        if name.removesuffix(".npz") in [json.loads(x)["clip"] for x in lines[:2]]:
            assert (mv / "windows" / name).stat().st_mtime_ns == mtime
    with np.load(next((mv / "windows").glob("*.npz"))) as f:
        assert f["views"].shape[1:] == (4, 16, 22, 2) and np.isfinite(f["views"]).all()
    other = tmp_path / "stage1-other"
    fastmotion_cli("train", "mvlift", "--data", data2d, "--out", other, "--steps", 4, "--seed", 1, *args)
    refused = fastmotion_cli("data", "mvlift", *data_args[:1], other / "last.pt", *data_args[2:], check=False)
    assert refused.returncode != 0 and "stage-1 checkpoint" in refused.stderr and str(stage1) in refused.stderr
    refused = fastmotion_cli("train", "mvlift-mv", "--data", data2d, "--out", tmp_path / "bad", "--steps", 2,
                             check=False)
    assert refused.returncode != 0 and "is not a folder of `fastmotion data mvlift`" in refused.stderr
    run = tmp_path / "mvrun"
    fastmotion_cli("train", "mvlift-mv", "--data", mv, "--out", run, "--steps", 4, "--batch-size", 4,
                   "--eval-every", 4, "--ckpt-every", 4)
    assert torch.load(run / "last.pt", weights_only=True)["kind"] == "MultiViewDenoiser"
    out = tmp_path / "lifted"
    lifted = fastmotion_cli("lift", "--model", "mvlift", "--checkpoint", run / "last.pt", "--data", data2d,
                            "--limit", 2, "--iterations", 3, "--out", out, "--render")
    assert "MultiViewDenoiser" in lifted.stderr
    for path in out.glob("*.npy"):
        joints = np.load(path)
        assert joints.shape[1:] == (22, 3) and np.isfinite(joints).all()
    assert len(list(out.glob("*.gif"))) == 2
    report = tmp_path / "eval.json"
    fastmotion_cli("eval", "lift", "--model", "mvlift", "--checkpoint", run / "last.pt", "--data", data2d,
                   "--limit", 2, "--json", report)
    result = json.loads(report.read_text())
    assert result["lifter"] == "MVLift (feed-forward)" and result["seconds_per_clip"] > 0
    refused = fastmotion_cli("lift", "--model", "mvlift", "--checkpoint", run / "last.pt", "--data", data2d,
                             "--limit", 1, "--mvlift-mode", "sds3d", "--out", out, check=False)
    assert refused.returncode != 0 and "--mvlift-mode applies to stage-1 checkpoints" in refused.stderr


def test_multiview_batch_turns_the_ring_and_keeps_the_geometry():
    """Each training window seen from view k: its views are the ring's turned by k, rescaled with the focal
    length, so they still triangulate over the ring, to the 3D turned by -k quarter turns about the vertical."""
    from types import SimpleNamespace

    from fastmotion.train.mvlift import multiview_batch

    joints = _camera_motion()
    f = torch.tensor([4.0], dtype=torch.float64)
    views, world = to_ring(joints, f, SMPL22.root_position(joints[:, 0]), RingSettings())
    windows = SimpleNamespace(views=views.transpose(0, 1).repeat(8, 1, 1, 1, 1), mask=torch.ones(8, 12, dtype=bool),
                              focal=f.repeat(8))
    g = torch.Generator().manual_seed(0)
    reference, others, mask, focal = multiview_batch(windows, torch.arange(8), g)
    g = torch.Generator().manual_seed(0)
    first = torch.randint(4, (8,), generator=g)
    assert set(first.tolist()) > {0}  # the draws turn the ring
    config = FeedForwardConfig(refine_iterations=0)
    for b in range(8):
        k = int(first[b])
        scale = (views[k, 0, 0].amax(0) - views[k, 0, 0].amin(0)).amax() / 2
        assert torch.allclose(reference[b], views[k, 0] / scale, atol=1e-12)
        assert abs(float(focal[b]) - 4.0 / float(scale)) < 1e-9
        turned = torch.cat([reference[b:b + 1], others[b]], 0)  # [V, T, J, 2]
        recovered = recover_3d(turned[:, None], config, focal[b:b + 1])[0]
        angle = -k * np.pi / 2
        c, s = np.cos(angle), np.sin(angle)
        R = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)
        cams = multiview.ring_cameras(4, 2.8, dtype=torch.float64)
        expected = (world[0] @ R.T) @ cams.R[0].T + cams.t[0]
        assert (recovered - expected).abs().max() < 1e-5, k


def test_data_leaves_out_poor_windows_and_refuses_other_settings(data2d, tmp_path):
    from fastmotion.errors import DatasetError
    from fastmotion.models.mvlift import LineDenoiser, LineDenoiserConfig
    from fastmotion.pipelines.lifting import dataset_clips
    from fastmotion.pipelines.mvlift import MVLiftLifter, Stage2Config
    from fastmotion.pipelines.mvlift_data import MultiViewWindows, build_multiview_data

    torch.manual_seed(0)
    model = LineDenoiser(LineDenoiserConfig(width=32, layers=1, heads=2, ff=64, dropout=0.0, max_frames=40,
                                            diffusion_steps=20)).eval()
    lifter = MVLiftLifter(model, 16, Stage2Config(iterations=2, refine_iterations=2))
    clips = dataset_clips(data2d, "train", 2)
    clips.append(type(clips[0])("too_short", clips[0].keypoints[:2], clips[0].camera))
    meta = {"format": "mvlift-multiview", "skeleton": "smpl22", "joints": 22, "window": 16,
            "ring": {"views": 4, "distance": 2.8, "threshold": 1e-9}, "stage1": {"sha256": "a" * 64,
                                                                               "checkpoint": "x.pt"}}
    report = build_multiview_data(lifter, clips, tmp_path / "mv", meta, RingSettings(threshold=1e-9))
    assert report["clips"] == 3 and report["windows"] == 0
    assert len(report["left_out"]) >= 2 and all("reprojection error" in r for r in report["left_out"])
    assert report["skipped"] == ["too_short: skipped (2 frames; MVLift needs at least 4)"]
    assert report["this_run"] == report["skipped"] + report["left_out"]
    with pytest.raises(DatasetError, match="holds no window yet"):
        MultiViewWindows(tmp_path / "mv")
    other = {**meta, "ring": {**meta["ring"], "threshold": 0.1}}
    with pytest.raises(DatasetError, match="differs in ring"):
        build_multiview_data(lifter, clips, tmp_path / "mv", other, RingSettings())
    assert build_multiview_data(lifter, clips, tmp_path / "mv", meta, RingSettings(threshold=1e-9))["this_run"] == []


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_feedforward_lift_does_not_depend_on_the_batch(data2d, sampler):
    """A clip lifts the same alone and beside a shorter clip (per-window draws made at the window length)."""
    from fastmotion.pipelines.lifting import dataset_clips
    from fastmotion.pipelines.mvlift_feedforward import MultiViewLifter

    torch.manual_seed(0)
    model = MultiViewDenoiser(TINY).eval()
    config = FeedForwardConfig(sampler=sampler, sample_steps=4, refine_iterations=5)
    clips = dataset_clips(data2d, "test", 2)
    short = type(clips[1])(clips[1].name, clips[1].keypoints[:9], clips[1].camera)
    alone = MultiViewLifter(model, 16, config).lift([short])
    together = MultiViewLifter(model, 16, config).lift([clips[0], short])
    assert torch.allclose(alone[short.name], together[short.name], atol=1e-6)
    assert torch.isfinite(together[clips[0].name]).all()
