"""MVLift (stage 1 model and losses, stage 2 optimisation, 3D recovery, windows, CLI)."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import synthetic_clip

from fastmotion.diffusion import GaussianDiffusion
from fastmotion.losses.mvlift import (
    LineSimulation,
    consistency_pairs,
    epipolar_consistency,
    simulate_lines,
    stage1_losses,
)
from fastmotion.models.mvlift import LineDenoiser, LineDenoiserConfig, normalise_clips
from fastmotion.motion import multiview
from fastmotion.pipelines.mvlift import (
    Stage2Config,
    chain_windows,
    optimise_views,
    recover_3d,
    windows,
)

TINY = LineDenoiserConfig(joints=22, width=32, layers=1, heads=2, ff=64, dropout=0.0, max_frames=40,
                          diffusion_steps=20)


def test_denoiser_shapes_and_checks():
    model = LineDenoiser(TINY)
    x, lines = torch.randn(3, 10, 22, 2), torch.randn(3, 10, 22, 3)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[0, 6:] = False
    assert model(x, lines, torch.tensor([0, 5, 19]), mask).shape == (3, 10, 22, 2)
    with pytest.raises(ValueError, match="joints"):
        model(torch.randn(3, 10, 17, 2), torch.randn(3, 10, 17, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="lines"):
        model(x, lines[..., :2], torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="max_frames"):
        model(torch.randn(1, 41, 22, 2), torch.randn(1, 41, 22, 3), torch.zeros(1, dtype=torch.long))


def test_denoiser_ignores_padded_frames():
    torch.manual_seed(0)
    model = LineDenoiser(TINY).eval()
    x, lines, t = torch.randn(1, 10, 22, 2), torch.randn(1, 10, 22, 3), torch.tensor([3])
    mask = torch.arange(10)[None] < 6
    other = x.clone()
    other[:, 6:] = 100.0
    a, b = model(x, lines, t, mask), model(other, lines, t, mask)
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-5)


def test_normalise_clips_first_frame_in_unit_box():
    k = torch.randn(2, 5, 22, 2) * 40 + 300
    n, centre, scale = normalise_clips(k, 0)
    assert torch.allclose(n[:, 0, 0], torch.zeros(2, 2), atol=1e-6)  # first frame's root at the origin
    extent = n[:, 0].amax(1) - n[:, 0].amin(1)
    assert torch.allclose(extent.amax(-1), torch.full((2,), 2.0))  # the longer side spans 2
    assert torch.allclose(n * scale[:, None, None, None] + centre[:, None, None], k, atol=1e-4)
    flat = k.clone()
    flat[1, 0] = 7.0
    with pytest.raises(ValueError, match="clip 1"):
        normalise_clips(flat, 0)


def test_simulated_lines_pass_through_every_joint_and_one_epipole():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 6, 22, 2, dtype=torch.float64)
    for p_ring in (0.0, 1.0):
        lines = simulate_lines(x0, g, LineSimulation(p_ring=p_ring))
        assert multiview.point_line_distance(x0, lines).max() < 1e-9
        assert torch.allclose(lines[..., :2].norm(dim=-1), torch.ones((), dtype=torch.float64), atol=1e-9)
        tri = torch.linalg.det(lines[:, 0, :3])  # three joints' lines of frame 0 meet in one point: det = 0
        assert tri.abs().max() < 1e-9
        e = torch.linalg.cross(lines[:, 0, 0], lines[:, 0, 1])  # that point (homogeneous), [B, 3]
        e = e / e.norm(dim=-1, keepdim=True)
        if p_ring == 1.0:  # another camera of the level ring: on the horizon y = 0 (or at infinity along it)
            assert e[:, 1].abs().max() < 1e-9
        else:  # uniform in [-3, 3]^2
            xy = e[:, :2] / e[:, 2:]
            assert xy.abs().max() <= 3 + 1e-6 and e[:, 1].abs().min() > 0


def test_stage1_learns_on_a_fixed_set():
    """The stage-1 objective falls well below its start on a small fixed set (the model can fit lines and 2D)."""
    torch.manual_seed(0)
    t = torch.linspace(0, 1, 16)
    x0 = torch.stack([torch.stack([torch.sin(6 * t + j) * 0.5, torch.cos(4 * t + j) * 0.5], -1) for j in range(22)],
                     1)[None].repeat(8, 1, 1, 1) * torch.linspace(0.6, 1.4, 8)[:, None, None, None]
    mask = torch.ones(8, 16, dtype=torch.bool)
    model, diffusion = LineDenoiser(TINY), GaussianDiffusion(TINY.diffusion_steps)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    history = []
    for step in range(150):
        out = stage1_losses(model, diffusion, x0, mask, torch.Generator().manual_seed(step))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        history.append(float(out["loss"].detach()))
    assert np.mean(history[-20:]) < 0.5 * np.mean(history[:10])


def test_consistency_pairs():
    assert consistency_pairs(6) == [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert consistency_pairs(3) == [(0, 1), (0, 2), (1, 2)]


def _ring_scene(views=6, frames=8):
    """A real motion placed at the ring's centre (first frame's pelvis at the origin, 1.7 m -> 2 units) and its
    exact images in the ring cameras: (joints [T, 22, 3] world, images [V, 1, T, 22, 2], P)."""
    joints = synthetic_clip(0, frames)
    joints = (joints - joints[:1, :1]) * (2 / 1.7)
    P = multiview.projection_matrices(multiview.ring_cameras(views, 3.0, dtype=torch.float64))
    return joints, multiview.project(joints, P)[:, None], P


class Oracle(torch.nn.Module):
    """A stage-1 'model' that predicts the true views: stage 2 must then converge to them."""

    def __init__(self, truth):
        super().__init__()
        self.truth, self.config = truth, SimpleNamespace(diffusion_steps=20)

    def forward(self, x, lines, t, mask):
        return self.truth.reshape(x.shape).to(x.dtype)


def test_epipolar_consistency_zero_for_true_views():
    _, images, P = _ring_scene()
    F = multiview.fundamental_matrices(P)
    mask = torch.ones(1, 8, dtype=torch.bool)
    assert float(epipolar_consistency(images, F, consistency_pairs(6), mask)) < 1e-9
    assert float(epipolar_consistency(images + 0.01 * torch.randn_like(images), F, consistency_pairs(6), mask)) > 1e-5


@pytest.mark.parametrize("focal", [1.0, 4.0])
def test_stage2_with_an_oracle_recovers_the_3d(focal):
    """With a denoiser that knows the true views, the optimisation reaches them from zero and the 3D recovery
    returns the true motion in the reference camera's frame: the optimiser, the losses and the geometry agree
    (also with ring cameras of another focal length, as the lifter uses them)."""
    joints, images, _ = _ring_scene()
    images = images * focal
    config = Stage2Config(iterations=400, lr=2e-2, refine_iterations=200)
    f = torch.tensor([focal])
    views = optimise_views(Oracle(images[1:].float()), images[0].float(), torch.ones(1, 8, dtype=torch.bool),
                           config, torch.Generator().manual_seed(0), f)
    assert views.shape == (6, 1, 8, 22, 2)
    assert (views - images.float()).abs().max() < 0.02 * focal
    cams = multiview.ring_cameras(6, 3.0, dtype=torch.float64)
    true_cam = joints @ cams.R[0].T + cams.t[0]
    lifted = recover_3d(views.double(), config, f)[0]
    assert (lifted - true_cam).norm(dim=-1).mean() < 0.05  # units of 0.85 m: a few cm


@pytest.mark.parametrize("mode", ["stage1", "sds3d"])
def test_ablation_modes_with_an_oracle_recover_the_3d(mode):
    """The paper's ablations reach the true 3D when the denoiser predicts the true views: stage 1 alone (sampled
    views, then the recovery) and SDS on the projections of optimised 3D joints."""
    from fastmotion.pipelines.mvlift import lift_windows

    joints, images, _ = _ring_scene()
    config = Stage2Config(iterations=300, lr=1e-2, refine_iterations=100, mode=mode, sample_steps=5)
    lifted, views = lift_windows(Oracle(images[1:].float()), images[0].float(), torch.ones(1, 8, dtype=torch.bool),
                                 config, torch.Generator().manual_seed(0))
    lifted = lifted[0].double()
    assert views.shape == (6, 1, 8, 22, 2) and (views - images.float()).abs().max() < 0.05
    cams = multiview.ring_cameras(6, 3.0, dtype=torch.float64)
    assert (lifted - (joints @ cams.R[0].T + cams.t[0])).norm(dim=-1).mean() < 0.05


def test_stage2_can_start_from_the_stage1_samples():
    """init='stage1': stage 2 starts from the views stage 1 samples (with the oracle: the true views, so one
    iteration already holds them; from zero it does not); a start of another shape is refused by name."""
    from fastmotion.pipelines.mvlift import lift_windows

    _, images, _ = _ring_scene()
    oracle, reference, mask = Oracle(images[1:].float()), images[0].float(), torch.ones(1, 8, dtype=torch.bool)
    for init, close in (("stage1", True), ("zero", False)):
        config = Stage2Config(iterations=1, refine_iterations=1, sample_steps=5, init=init)
        _, views = lift_windows(oracle, reference, mask, config, torch.Generator().manual_seed(0))
        assert bool((views - images.float()).abs().max() < 0.05) == close, init
    with pytest.raises(ValueError, match=r"start must be \[V - 1, B, T, J, 2\]"):
        optimise_views(oracle, reference, mask, Stage2Config(iterations=1), torch.Generator().manual_seed(0),
                       start=images.float())


def test_windows_cover_and_chain_exactly():
    assert windows(10, 16, 4) == [(0, 10)]
    spans = windows(50, 16, 4)
    assert spans[0] == (0, 16) and spans[-1][1] == 50 and all(b[0] == a[1] - 4 for a, b in zip(spans[:-2], spans[1:-1]))
    with pytest.raises(ValueError, match="overlap"):
        windows(50, 8, 8)
    truth = synthetic_clip(1, 50) + torch.tensor([0.0, 0.0, 4.0], dtype=torch.float64)  # in front of a camera
    # each window at its own scale about the camera centre (how single-view lifts come), plus a little noise
    pieces = [(1 + 0.2 * i) * truth[s:e] for i, (s, e) in enumerate(spans)]
    chained = chain_windows(pieces, spans, 50)  # window 0's scale is 1: the truth comes back
    assert chained.shape == (50, 22, 3) and torch.allclose(chained, truth, atol=1e-9)
    # the chained clip stays on the camera rays of every window (a free rotation or shift would leave them)
    noisy = [p * (1 + 0.02 * torch.randn(len(p), 1, 1, dtype=torch.float64)) for p in pieces]
    chained = chain_windows(noisy, spans, 50)
    rays = lambda x: x[..., :2] / x[..., 2:]  # noqa: E731
    assert torch.allclose(rays(chained), rays(truth), atol=1e-9)


def test_on_axis_is_the_turned_camera():
    """Turning the camera to the first hip (instead of shifting the image) is exact: on_axis of a projection is
    the projection of the turned points, and `toward` takes the axis onto that hip's ray."""
    from fastmotion.pipelines.mvlift import on_axis, toward

    points = synthetic_clip(2, 6)[None] + torch.tensor([1.2, 0.4, 4.0], dtype=torch.float64)  # off-centre
    image = points[..., :2] / points[..., 2:]
    hip = image[:, 0, 0]
    R = toward(hip)
    assert torch.allclose(R[0] @ torch.tensor([0.0, 0, 1], dtype=torch.float64),
                          torch.nn.functional.normalize(torch.cat([hip[0], torch.ones(1, dtype=torch.float64)]), dim=0))
    turned = points @ R[:, None]  # R^T x
    assert torch.allclose(on_axis(image, hip), turned[..., :2] / turned[..., 2:], atol=1e-12)
    assert on_axis(image, hip)[0, 0, 0].abs().max() < 1e-12


class RecordingOracle(Oracle):
    """The oracle, also checking that the lines it is given hold the true views (the line conditions of stage 2
    come from the right views and the right F), per window (two windows of different focal lengths)."""

    def __init__(self, truth):
        super().__init__(truth)
        self.worst = 0.0

    def forward(self, x, lines, t, mask):
        truth = self.truth.reshape(x.shape).to(lines.dtype)
        on = multiview.point_line_distance(truth, lines)[mask]
        self.worst = max(self.worst, float(on.max()))
        return truth.to(x.dtype)


def test_stage2_line_conditions_hold_the_true_views_for_each_window():
    """Two windows with different focal lengths and one padded: every line condition from the reference view
    passes through the true point (so it comes from the right F, per window), the optimisation reaches both
    windows' true views, and padded frames do not count."""
    joints, images, _ = _ring_scene(frames=8)
    focal = torch.tensor([1.0, 3.0], dtype=torch.float64)
    views = torch.cat([images, images], 1) * focal.view(1, 2, 1, 1, 1)  # [V, 2, T, J, 2]
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 6:] = False
    views[0, 1, 6:] = 0.0  # padding in the reference
    oracle = RecordingOracle(views[1:])
    config = Stage2Config(iterations=300, lr=2e-2, refine_iterations=1, line_source="reference")
    found = optimise_views(oracle, views[0], mask, config, torch.Generator().manual_seed(0), focal)
    assert oracle.worst < 1e-6
    assert (found - views)[:, 0].abs().max() < 0.02 and (found - views)[:, 1, :6].abs().max() < 0.06


def test_a_clip_lifts_the_same_whatever_shares_its_batch(tmp_path):
    """Random draws are per window: lifting a clip alone or with others gives the same 3D."""
    from fastmotion.pipelines.lifting import Clip2D
    from fastmotion.pipelines.mvlift import MVLiftLifter

    torch.manual_seed(0)
    model = LineDenoiser(TINY).eval()
    config = Stage2Config(iterations=3, refine_iterations=2, batch_clips=4)
    clips = [Clip2D(f"c{i}", (synthetic_clip(i, 12)[..., :2] / 4).float()) for i in range(3)]
    alone = MVLiftLifter(model, 16, config).lift(clips[1:2])["c1"]
    together = MVLiftLifter(model, 16, config).lift(clips)["c1"]
    assert torch.allclose(alone, together, atol=1e-5)


def test_lifter_skips_bad_clips_with_the_reason():
    from fastmotion.pipelines.lifting import Clip2D
    from fastmotion.pipelines.mvlift import MVLiftLifter

    model = LineDenoiser(TINY).eval()
    good = (synthetic_clip(0, 12)[..., :2] / 4).float()
    nan = good.clone()
    nan[5, 3] = float("nan")
    lifter = MVLiftLifter(model, 16, Stage2Config(iterations=2, refine_iterations=1))
    done = []
    out = lifter.lift([Clip2D("short", good[:2]), Clip2D("nan", nan), Clip2D("ok", good),
                       Clip2D("coco", torch.zeros(12, 17, 2))], done.append)
    assert set(out) == {"ok"} and sum(done) == 4
    assert any("short: skipped (2 frames" in s for s in lifter.skipped)
    assert any("nan: skipped (NaN or inf keypoints in frame(s) 5)" in s for s in lifter.skipped)
    assert any("coco: skipped (17 joints" in s for s in lifter.skipped)


def test_stage2_config_checks():
    with pytest.raises(ValueError, match="views"):
        Stage2Config(views=2)
    with pytest.raises(ValueError, match="overlap"):
        Stage2Config(overlap=0)
    with pytest.raises(ValueError, match="mode"):
        Stage2Config(mode="x")
    with pytest.raises(ValueError, match="line_source"):
        Stage2Config(line_source="x")
    with pytest.raises(ValueError, match="init must be"):
        Stage2Config(init="x")
    with pytest.raises(ValueError, match="init='stage1' is a setting of mode 'stage2'"):
        Stage2Config(init="stage1", mode="sds3d")
    with pytest.raises(ValueError, match="batch_clips"):
        Stage2Config(batch_clips=0)
    with pytest.raises(ValueError, match="focal"):
        Stage2Config(focal=0.0)


def test_cli_train_lift_and_eval(data2d, tmp_path):
    """Real subprocess runs: stage 1 trains through the shared loop, `lift --model mvlift` writes 3D for every clip
    and `eval lift --model mvlift` reports both protocols in its JSON."""
    import json

    from helpers import fastmotion_cli

    run = tmp_path / "mvlift"
    fastmotion_cli("train", "mvlift", "--data", data2d, "--out", run, "--steps", 6, "--batch-size", 4,
                   "--length", 16, "--eval-every", 6, "--ckpt-every", 6)
    assert (run / "last.pt").exists() and (run / "best.pt").exists()
    state = torch.load(run / "last.pt", weights_only=True)  # as written before skeletons other than SMPL-22
    del state["model_config"]["skeleton"]
    torch.save(state, run / "last.pt")
    fastmotion_cli("train", "mvlift", "--data", data2d, "--out", run, "--steps", 8, "--batch-size", 4,
                   "--length", 16, "--eval-every", 8, "--ckpt-every", 8, "--resume")
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 8
    out = tmp_path / "lifted"
    done = fastmotion_cli("lift", "--model", "mvlift", "--checkpoint", run / "last.pt", "--data", data2d,
                          "--limit", 2, "--iterations", 3, "--out", out, "--render")
    lifted = sorted(out.glob("*.npy"))
    assert len(lifted) == 2 and "LineDenoiser" in done.stderr
    from PIL import Image

    with Image.open(out / f"{lifted[0].stem}.gif") as gif:  # input 2D | views 1-5 | 3D | hidden truth
        assert gif.size[0] == 8 * gif.size[1]
    for path in lifted:
        joints = np.load(path)
        assert joints.ndim == 3 and joints.shape[1:] == (22, 3) and np.isfinite(joints).all()
    report = tmp_path / "eval.json"
    fastmotion_cli("eval", "lift", "--model", "mvlift", "--checkpoint", run / "last.pt", "--data", data2d,
                   "--limit", 2, "--iterations", 3, "--json", report)
    result = json.loads(report.read_text())
    assert set(result["mvlift_protocol"]["model"]) == {"T_root", "MPJPE", "PA-MPJPE-seq", "J_2D"}
    assert "J_2D" not in result["mvlift_protocol"]["zero_depth"] and result["clips"] == 2
    ablation = tmp_path / "eval-stage1.json"
    fastmotion_cli("eval", "lift", "--model", "mvlift", "--checkpoint", run / "last.pt", "--data", data2d,
                   "--limit", 2, "--mvlift-mode", "stage1", "--json", ablation)
    table = fastmotion_cli("eval", "table", report, ablation, "--name", "stage 2", "--name", "stage 1",
                           "--protocol", "mvlift").stdout
    assert "T_root" in table and "J_2D (px)" in table and "| stage 1 | 2 |" in table


def test_bench_lift_reports_throughput_and_the_parts():
    from fastmotion.bench import lift as lift_bench

    rows = lift_bench.run("cpu", clips=2, frames=8, iterations=1, progress=lambda _: None, min_seconds=0.0)
    batched = next(r for r in rows if r.backend == "batched" and "iteration" in r.op)
    assert batched.median_ms > 0 and float(batched.extra["windows/min (small preset)"]) > 0
    assert {"denoiser", "lines", "consistency", "geometry"} <= set(batched.extra)


def test_cli_native_coco17_end_to_end(tmp_path):
    """MVLift on a skeleton other than SMPL-22: COCO-17 keypoints imported as they are (`data import --native`),
    stage 1 trained on them, clips lifted to [T, 17, 3] and scored on the joints both layouts have; the Free3D
    trainers and a COCO-17 model each refuse the other skeleton's data by name."""
    import json
    import shutil

    from helpers import fastmotion_cli

    from fastmotion.data.build import build_synthetic, render_2d

    build_synthetic(tmp_path / "synth", num=24, seed=0)
    render_2d(tmp_path / "synth", tmp_path / "coco", seed=0, layout="coco17", camera=False)
    data = tmp_path / "coco2d"
    fastmotion_cli("data", "import", "--from", tmp_path / "coco", "--out", data, "--native")
    assert json.loads((data / "meta.json").read_text())["skeleton"] == "coco17"
    name = (data / "test.txt").read_text().split()[0]
    assert np.load(data / "keypoints" / f"{name}.npy").shape[1:] == (17, 2)
    refused = fastmotion_cli("train", "prior", "--data", data, "--out", tmp_path / "prior", "--steps", 1, check=False)
    assert refused.returncode != 0 and "holds coco17 keypoints" in refused.stderr and "Traceback" not in refused.stderr

    run = tmp_path / "mvlift"
    fastmotion_cli("train", "mvlift", "--data", data, "--out", run, "--steps", 4, "--batch-size", 4, "--length", 16,
                   "--eval-every", 4, "--ckpt-every", 4)
    out = tmp_path / "lifted"
    fastmotion_cli("lift", "--model", "mvlift", "--checkpoint", run / "last.pt", "--data", data, "--limit", 2,
                   "--iterations", 2, "--out", out, "--render")
    lifted = sorted(out.glob("*.npy"))
    assert len(lifted) == 2 and all(np.load(p).shape[1:] == (17, 3) for p in lifted)
    assert (out / f"{lifted[0].stem}.gif").exists()
    report = tmp_path / "eval.json"
    scored = fastmotion_cli("eval", "lift", "--model", "mvlift", "--checkpoint", run / "last.pt", "--data", data,
                            "--limit", 2, "--iterations", 2, "--json", report).stdout
    result = json.loads(report.read_text())
    assert result["joints"].startswith("coco17") and np.isfinite(result["model"]["PA-MPJPE-12"])
    assert "joints scored: coco17" in scored
    smpl_row = tmp_path / "eval-smpl22.json"  # a row scored on all 22 joints beside it is flagged
    smpl_row.write_text(json.dumps({**result, "joints": "smpl22"}))
    table = fastmotion_cli("eval", "table", report, smpl_row, "--name", "coco", "--name", "smpl").stdout
    assert "scored on different joints" in table and "coco: coco17" in table and "smpl: smpl22" in table
    assert "except PA-MPJPE-12" in table
    table = fastmotion_cli("eval", "table", report, smpl_row, "--protocol", "mvlift").stdout
    assert "do not compare." in table and "PA-MPJPE-12" not in table

    track = tmp_path / "walk.npy"  # a detector's COCO-17 file [T, 17, 3], lifted natively
    shutil.copy(tmp_path / "coco" / "keypoints" / f"{name.rsplit('_', 1)[0]}.npy", track)
    fastmotion_cli("lift", "--model", "mvlift", "--checkpoint", run / "last.pt", "--keypoints", track,
                   "--iterations", 2, "--out", tmp_path / "from-file")
    assert np.load(tmp_path / "from-file" / "walk.npy").shape[1:] == (17, 3)

    smpl = tmp_path / "smpl2d"
    render_2d(tmp_path / "synth", smpl, seed=0)
    wrong = fastmotion_cli("lift", "--model", "mvlift", "--checkpoint", run / "last.pt", "--data", smpl,
                           "--out", tmp_path / "wrong", check=False)
    assert wrong.returncode != 0 and "holds smpl22 keypoints; this model takes coco17" in wrong.stderr
    assert not (tmp_path / "wrong").exists()


def test_a_strided_subset_spans_the_split(data2d):
    """`eval lift --stride K --limit N`: every K-th clip of the split, at most N (a split sorted by action, as
    Bandai-2's, is then sampled across its actions)."""
    from fastmotion.pipelines.lifting import dataset_clips

    names = [c.name for c in dataset_clips(data2d, "train")]
    assert [c.name for c in dataset_clips(data2d, "train", limit=3, stride=4)] == names[::4][:3]
    with pytest.raises(ValueError, match="stride must be at least 1"):
        dataset_clips(data2d, "train", stride=0)
