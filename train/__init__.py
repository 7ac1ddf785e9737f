"""Training (installed as fastmotion.train): the one loop (`loop.Trainer`) and each method's training run
(`free3d`: the 2D prior and the ML-RQ; `videomdm`; `t2m`: the MoMask-style transformers and the text-motion
evaluator). Inference and evaluation live in `fastmotion.pipelines`, the commands in `fastmotion.cli`."""
