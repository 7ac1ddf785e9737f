"""Inference on trained models, one module per method: loading checkpoints, lifting 2D to 3D, sampling
motions from text, and the evaluations. The CLI commands are thin layers over these; training lives in
`fastmotion.train`.

- `lifting`: the `Lifter` interface every method's lifting implements, the zero-depth baseline,
  `evaluate_lifting`, `load_lifter` and 2D keypoint files;
- `free3d`: the 2D prior and the ML-RQ (Free3D);
- `videomdm`: VideoMDM's sampling and guided lifting; `teacher`: its noisy 3D teacher;
- `t2m`: text-to-motion on ML-RQ codes (MoMask-style) and its evaluation;
- `mvlift`: MVLift's stage 2 (multi-view SDS optimisation) and 3D recovery; `mvlift_data`: its stage 3 (multi-view
  data from stage 2); `mvlift_feedforward`: lifting with its stage-4 multi-view diffusion model.
"""
