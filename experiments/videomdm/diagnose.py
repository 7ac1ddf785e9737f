"""Where a VideoMDM checkpoint loses FID: diagnostics on the held-out 3D of a synthetic 2D dataset.

    python experiments/videomdm/diagnose.py shrink --data demo/synth2d demo/videomdm/plain-mdm/last.pt \
        demo/videomdm/videomdm/last.pt
    python experiments/videomdm/diagnose.py hybrid --data demo/synth2d --evaluator demo/evaluator/last.pt \
        --high demo/videomdm/plain-mdm/last.pt --low demo/videomdm/videomdm/last.pt --switch 5

shrink: the TRUE test motions (eval3d/), noised at timestep t, denoised once by each checkpoint (text, guidance
2.5); prints the predicted/true ratio of the frame-to-frame velocity per camera axis and of the skeleton's total
bone length. A denoiser that fits its training distribution returns ratios near 1; below 1 it shrinks motion.
hybrid: text-to-motion FID / R-precision on the test split (--repeats runs) when checkpoint --high denoises
t >= switch and --low the rest (both trained on the same teacher, so they share feature statistics); --lift adds
`fastmotion eval lift` of the test clips with the same split sampler.
expert: a low-noise expert for hybrid's --low: a copy of --base fine-tuned only below t = --switch, on every step
with the anchored 2D objective in multistep chains (2d), the plain MDM loss on the teacher's 3D (plain: the
comparison with the same extra steps), or both (mix).

    python experiments/videomdm/diagnose.py expert --data demo/synth2d --base demo/videomdm/plain-mdm/last.pt \
        --objective 2d --out demo/videomdm/expert-2d.pt
    python experiments/videomdm/diagnose.py hybrid --data demo/synth2d --evaluator demo/evaluator/last.pt \
        --high demo/videomdm/plain-mdm/last.pt --low demo/videomdm/expert-2d.pt --switch 24 --repeats 3 --lift
floor: the FID of motion sets that no model generated, against the test split's true motions: the teacher's
motions of the test clips and of as many training clips, and those training clips' true motions (same count,
since FID's bias grows as the count falls). A model trained on the teacher's 3D tends to the teacher's figure;
the true training motions' figure is what a perfect generator would score. With --checkpoints, also each
VideoMDM checkpoint's guided lifts of the test clips (`fastmotion lift --model mdm`, seed 0).
grads: from training logs (log.jsonl), the median gradient norm (before clipping) of the multistep-chain
batches and of the plain-MDM batches while the learning rate is at its peak.

    python experiments/videomdm/diagnose.py floor --data demo/synth2d --evaluator demo/evaluator/last.pt \
        --checkpoints demo/videomdm/plain-mdm/last.pt demo/videomdm/videomdm/last.pt
    python experiments/videomdm/diagnose.py grads demo/videomdm/videomdm/log.jsonl
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from fastmotion.data import humanml3d as hml
from fastmotion.diffusion import GaussianDiffusion
from fastmotion.motion.humanml3d import FEATURE_DIM, features_to_joints
from fastmotion.motion.skeleton import SMPL22
from fastmotion.data import teacher_bank
from fastmotion.pipelines import videomdm as pv
from fastmotion.train import videomdm as vm


def guided_x0(model, x, t, text, mask, guidance=2.5):
    B = len(x)
    both = model.mdm(torch.cat([x, x]), torch.cat([t, t]), torch.cat([text, text]), torch.cat([mask, mask]),
                     torch.cat([torch.zeros(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool)]))
    c, u = both.chunk(2)
    return u + guidance * (c - u)


def true_windows(data: Path, clips: int):
    """The first `clips` test clips' true motion, canonicalised as VideoMDM trains (features, camera, caption)."""
    feats, cams, texts = [], [], []
    for name in hml.read_split(data, "test")[:clips]:
        joints = torch.from_numpy(hml.load_joints(data / "eval3d" / "new_joints" / f"{name}.npy")).double()[:197]
        with np.load(data / "cameras" / f"{name}.npz") as c:
            R, t = (torch.from_numpy(np.asarray(c[k], np.float64)) for k in ("R", "t"))
        f, Rw, tw = teacher_bank.canonical_window(joints, R, t)
        feats.append(f.float())
        cams.append((Rw.float(), tw.float()))
        texts.append((hml.captions_of(data, name) or [""])[0])
    F = max(len(f) for f in feats)
    mask = torch.arange(F)[None] < torch.tensor([len(f) for f in feats])[:, None]
    feats = torch.stack([torch.cat([f, f[-1:].expand(F - len(f), -1)]) for f in feats])
    return feats, mask, torch.stack([c[0] for c in cams]), torch.stack([c[1] for c in cams]), texts


@torch.no_grad()
def shrink(args):
    feats, mask, R, t, texts = true_windows(args.data, args.clips)
    parents = list(SMPL22.parents[1:])
    noise = torch.randn(feats.shape, generator=torch.Generator().manual_seed(0))
    diffusion = GaussianDiffusion(50)
    frame_mask = mask[:, 1:, None].float()

    def profile(joints):
        cam = joints @ R.transpose(1, 2)[:, None] + t[:, None, None]
        vel = ((cam[:, 1:] - cam[:, :-1]) ** 2 * frame_mask[..., None]).sum((0, 1, 2)) / (frame_mask.sum() * 22)
        bones = (joints[:, :, 1:] - joints[:, :, parents]).norm(dim=-1).sum(-1)
        return vel.sqrt(), (bones * mask).sum() / mask.sum()

    true_vel, true_bones = profile(features_to_joints(feats))
    for path in args.checkpoints:
        model, _ = pv.load_mdm(path, "cpu")
        text = model.text_features(texts, None)
        x0 = (feats - model.mean) / model.std
        for step in args.t:
            tt = torch.full((len(x0),), step)
            pred = guided_x0(model, diffusion.q_sample(x0, tt, noise), tt, text, mask)
            vel, bones = profile(features_to_joints(pred * model.std + model.mean))
            ratio = (vel / true_vel).tolist()
            print(f"{path} t={step:2d}: velocity x {ratio[0]:.3f} y {ratio[1]:.3f} depth {ratio[2]:.3f}, "
                  f"bone length {float(bones / true_bones):.3f} (predicted / true)")


def hybrid_sampler(high, switch: int):
    """A stand-in for `videomdm.sample_mdm` in which checkpoint `high` denoises t >= switch and the model it is
    called with the rest (its x0_hook too, so guided lifting runs through it)."""

    @torch.no_grad()
    def sample(model, texts, frames, generator, guidance=2.5, sampler="ddpm", steps=None, clip=None, x0_hook=None,
               diffusion_steps=50):
        mask = torch.arange(max(frames))[None] < torch.tensor(frames)[:, None]
        text = {id(m): m.text_features(texts, clip) if texts is not None else None for m in (model, high)}

        def denoise(x, t):
            m = high if int(t[0]) >= switch else model
            if text[id(m)] is None:
                return m.mdm(x, t, None, mask)
            return guided_x0(m, x, t, text[id(m)], mask, guidance)

        shape = (len(frames), max(frames), FEATURE_DIM)
        return GaussianDiffusion(diffusion_steps).sample(denoise, shape, generator, sampler, steps, "cpu", x0_hook)

    return sample


def hybrid(args):
    from fastmotion.models.t2m import SamplingConfig
    from fastmotion.pipelines.t2m import T2MEvalConfig, evaluate_t2m, load_evaluator

    pv.sample_mdm = hybrid_sampler(pv.load_mdm(args.high, "cpu")[0], args.switch)  # every sampler goes through it
    t2m = pv.MDMTextToMotion(args.low)
    result = evaluate_t2m(t2m, load_evaluator(args.evaluator, "cpu"), args.data, "test", SamplingConfig(),
                          T2MEvalConfig(repeats=args.repeats, mm_prompts=0), False)
    row = result["metrics"]["model"]
    print(f"high {args.high} for t >= {args.switch}, low {args.low} below: FID {row['FID'][0]:.3f} ± "
          f"{row['FID'][1]:.3f}, R-precision top-3 {row['R-precision top-3'][0]:.3f}, Diversity "
          f"{row['Diversity'][0]:.3f} ({args.repeats} run(s))")
    if args.lift:  # `fastmotion eval lift`, its guided sampling through the same hybrid
        from fastmotion.cli import main as cli

        cli(["eval", "lift", "--model", "mdm", "--checkpoint", args.low, "--data", str(args.data), "--split", "test"],
            standalone_mode=False)


def expert(args):
    """Fine-tune a copy of --base on timesteps below --switch only, for use as hybrid's --low beside --base."""
    import time

    from fastmotion.losses.videomdm import VideoMDMLossConfig
    from fastmotion.models.mdm import MDMConfig
    from fastmotion.checkpoint import load_checkpoint
    from fastmotion.train.loop import step_seed

    size = args.switch // args.buckets

    def chain(config, batch, generator):  # every batch takes the multistep chain below the switch
        draws = [b * size + torch.randint(size, (), generator=generator) for b in range(args.buckets)]
        return [torch.full((batch,), int(d), dtype=torch.long) for d in reversed(draws)]

    vm.draw_timesteps = chain
    config = vm.VideoMDMConfig(warmup_steps=0, threshold=args.switch, buckets=args.buckets, high_noise="plain-mdm",
                               losses=VideoMDMLossConfig(root="teacher"))
    teacher = args.data / "teacher"
    state = load_checkpoint(args.base, "VideoMDM")
    sizes = MDMConfig(**{k: v for k, v in state["model_config"].items() if k in MDMConfig.__dataclass_fields__})
    run = vm.mdm_run(args.data, teacher, sizes, config, args.batch_size, torch.device("cpu"))
    model = run.model
    model.load_state_dict(state["model"])
    bank = teacher_bank.TeacherBank(args.data, teacher, "train", model.mdm.config.max_frames)
    diffusion = GaussianDiffusion(config.diffusion_steps)
    optimizer = torch.optim.AdamW(model.parameters(), args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # the training loop's shape: warm-up, drops at 70% and 90%
        optimizer, lambda s: min(1, (s + 1) / 20) * 0.1 ** sum(s >= int(m * args.steps) for m in (0.7, 0.9)))

    def plain_loss(generator):  # plain MDM loss on the teacher's 3D, t uniform below the switch
        feats, _, mask, texts, _ = bank.batch(args.batch_size, generator)
        x0 = (feats - model.mean) / model.std
        drop = torch.rand(len(texts), generator=generator) < model.mdm.config.cond_drop
        noise = torch.randn(x0.shape, generator=generator)
        tt = torch.randint(args.switch, (len(texts),), generator=generator)
        noisy = diffusion.q_sample(x0, tt, noise)
        return vm.masked_mse(model.mdm(noisy, tt, model.text_features(texts, None), mask, drop), x0, mask)

    start = time.time()
    for step in range(args.steps):
        generator = torch.Generator().manual_seed(step_seed(args.seed, step))
        torch.manual_seed(step_seed(args.seed, step))
        terms = {}
        if args.objective in ("2d", "mix"):
            terms["2d"] = run.step_fn(model, step, generator)["loss"]
        if args.objective in ("plain", "mix"):
            terms["plain"] = plain_loss(generator) * (args.plain_weight if args.objective == "mix" else 1.0)
        loss = sum(terms.values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 25 == 0 or step + 1 == args.steps:
            print(f"step {step}: " + ", ".join(f"{k} {float(v.detach()):.4f}" for k, v in terms.items()) +
                  f", {(time.time() - start) / (step + 1):.2f} s/step", flush=True)
    state["model"] = model.state_dict()
    for key in ("trained_model", "averaged_steps"):  # a weight average's resume state no longer matches
        state.pop(key, None)
    state.pop("optimizer", None)
    torch.save(state, args.out)
    print(f"{args.out}: {args.objective} fine-tune of {args.base}, {args.steps} steps below t = {args.switch}")


@torch.no_grad()
def floor(args):
    from fastmotion.metrics import generation as gm
    from fastmotion.pipelines.t2m import _embed, load_evaluator

    evaluator = load_evaluator(args.evaluator, "cpu")

    def camera_frame(joints_path, camera_path):
        with np.load(camera_path) as c:
            R, t = (torch.from_numpy(np.asarray(c[k], np.float64)) for k in ("R", "t"))
        return (torch.from_numpy(np.asarray(hml.load_joints(joints_path), np.float64)) @ R.T + t).float()

    def true(names):
        return [camera_frame(args.data / "eval3d" / "new_joints" / f"{n}.npy", args.data / "cameras" / f"{n}.npz")
                for n in names]

    def teacher(names):
        folder = args.data / "teacher"
        return [camera_frame(folder / f"{n}.npy", folder / "cameras" / f"{n}.npz") for n in names
                if (folder / f"{n}.npy").exists()]

    def lifts(path, names):
        from fastmotion.pipelines.lifting import dataset_clips, load_lifter

        lifter = load_lifter("mdm", path, "cpu", data=args.data, split="test")
        lifted = lifter.lift([c for c in dataset_clips(args.data, "test") if c.name in set(names)])
        return [torch.as_tensor(lifted[n]).float() for n in names if n in lifted]

    test = hml.read_split(args.data, "test")
    train = hml.read_split(args.data, "train")
    train = [train[i] for i in torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:len(test)]]
    reference = _embed(evaluator, true(test), "cpu")
    sets = [("teacher, test clips", lambda: teacher(test)), ("teacher, training clips", lambda: teacher(train)),
            ("true motion, training clips", lambda: true(train))]
    for path in args.checkpoints:
        sets.append((f"guided lifts of {path}, test clips", lambda path=path: lifts(path, test)))
    for label, make in sets:
        motions = make()
        print(f"{label}: FID {gm.fid(reference, _embed(evaluator, motions, 'cpu')):.3f} ({len(motions)} motions, "
              f"against the {len(test)} test clips)")


def grads(args):
    import json
    import statistics

    for path in args.logs:
        records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        peak = max(r["lr"] for r in records if "lr" in r)
        at_peak = [r for r in records if "grad_norm" in r and r.get("lr") == peak]
        chain = [r["grad_norm"] for r in at_peak if r.get("multistep") == 1.0]
        plain = [r["grad_norm"] for r in at_peak if "mdm" in r]
        cells = [f"{name} {statistics.median(v):.3f} ({len(v)} logged)" for name, v in
                 (("chain batches", chain), ("plain MDM batches", plain)) if v]
        print(f"{path}: median gradient norm at lr {peak:g}: " + ", ".join(cells))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("shrink")
    s.add_argument("checkpoints", nargs="+")
    s.add_argument("--t", type=int, nargs="+", default=[2, 25, 40])
    s.add_argument("--clips", type=int, default=96)
    h = sub.add_parser("hybrid")
    h.add_argument("--high", required=True)
    h.add_argument("--low", required=True)
    h.add_argument("--switch", type=int, required=True)
    h.add_argument("--evaluator", required=True)
    h.add_argument("--repeats", type=int, default=1)
    h.add_argument("--lift", action="store_true", help="also guided lifting of the test clips (PA-MPJPE)")
    e = sub.add_parser("expert")
    e.add_argument("--base", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--objective", choices=["2d", "plain", "mix"], required=True)
    e.add_argument("--switch", type=int, default=24)
    e.add_argument("--buckets", type=int, default=4)
    e.add_argument("--steps", type=int, default=300)
    e.add_argument("--lr", type=float, default=1e-4)
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--plain-weight", type=float, default=10.0, help="mix: weight of the plain MDM loss")
    e.add_argument("--seed", type=int, default=0)
    f = sub.add_parser("floor")
    f.add_argument("--evaluator", required=True)
    f.add_argument("--checkpoints", nargs="*", default=[])
    for p in (s, h, f, e):
        p.add_argument("--data", type=Path, required=True)
    g = sub.add_parser("grads")
    g.add_argument("logs", nargs="+")
    args = parser.parse_args()
    {"shrink": shrink, "hybrid": hybrid, "floor": floor, "grads": grads, "expert": expert}[args.command](args)


if __name__ == "__main__":
    main()
