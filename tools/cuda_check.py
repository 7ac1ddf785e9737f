"""`make cuda-check`: compile and link fastmotion._C with its CUDA kernels, then load it, with no GPU needed.

Builds into build/cuda-check (the installed extension is left alone) and checks that the loaded library
registered CUDA kernels for every op, so CUDA code that does not build cannot land.
"""
import glob
import importlib.util
import os
import subprocess
import sys
import time

import torch

OUT = os.path.join("build", "cuda-check")


def main() -> int:
    env = dict(os.environ, FASTMOTION_CUDA="1", TORCH_CUDA_ARCH_LIST=os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0"))
    env.setdefault("CUDA_HOME", "/usr/local/cuda")
    start = time.time()
    print(f"cuda-check: building fastmotion._C for TORCH_CUDA_ARCH_LIST={env['TORCH_CUDA_ARCH_LIST']} ...", flush=True)
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib", OUT, "--build-temp", OUT + "-tmp"],
                   env=env, check=True)
    (path,) = glob.glob(os.path.join(OUT, "fastmotion", "_C*.so"))
    spec = importlib.util.spec_from_file_location("fastmotion._C", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not module.with_cuda:
        print("cuda-check: FAILED, the library was built without CUDA kernels", file=sys.stderr)
        return 1
    from fastmotion.ops._backends import OPS

    ops = sorted({name for spec in OPS.values() if "cuda" in spec.implemented for name in spec.entry_points})
    missing = [op for op in ops
               if not torch._C._dispatch_has_kernel_for_dispatch_key(f"fastmotion::{op}", "CUDA")]
    if missing:
        print(f"cuda-check: FAILED, no CUDA kernel registered for {missing}", file=sys.stderr)
        return 1
    print(f"cuda-check: OK, {path} built and loaded with CUDA kernels in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
