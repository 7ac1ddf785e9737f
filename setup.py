"""Build fastmotion and its compiled extension `fastmotion._C`.

Environment switches:
  FASTMOTION_NO_EXT=1   pure Python install (only the torch reference backend)
  FASTMOTION_CUDA=0|1   force the CUDA kernels off / on (default: on when nvcc and a CUDA build of torch exist)
  TORCH_CUDA_ARCH_LIST  CUDA architectures to compile for (torch's own variable; default: the visible GPU,
                        or 8.0;9.0+PTX when none is visible)
Always build with `pip install --no-build-isolation -e .` so the extension links the installed torch.
"""
import glob
import os

from setuptools import find_packages, setup

PACKAGE_DIR = {"fastmotion": "fastmotion", "fastmotion.kernels": "kernels",
               "fastmotion.train": "train", "fastmotion.bench": "bench"}
PACKAGES = find_packages(include=["fastmotion", "fastmotion.*"]) + list(PACKAGE_DIR)[1:]


def _flag(name):
    value = os.environ.get(name, "").strip()
    if value not in ("", "0", "1"):
        raise SystemExit(f"setup.py: {name} must be 0 or 1, got {value!r}")
    return None if value == "" else value == "1"


def extensions():
    if _flag("FASTMOTION_NO_EXT"):
        return [], {}
    import torch
    from torch.utils import cpp_extension

    want_cuda = _flag("FASTMOTION_CUDA")
    can_cuda = cpp_extension.CUDA_HOME is not None and torch.version.cuda is not None
    if want_cuda and not can_cuda:
        raise SystemExit("setup.py: FASTMOTION_CUDA=1 but nvcc (CUDA_HOME) or a CUDA build of torch is missing")
    use_cuda = can_cuda if want_cuda is None else want_cuda

    sources = ["csrc/ext.cpp"] + sorted(glob.glob("csrc/*/*_cpu.cpp"))
    args = {"cxx": ["-O3", "-fopenmp"]}
    macros = []
    ext_cls = cpp_extension.CppExtension
    if use_cuda and not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0+PTX"  # no GPU to ask: Ampere, Hopper, PTX for newer
    if use_cuda:
        sources += sorted(glob.glob("csrc/*/*.cu"))
        args["nvcc"] = ["-O3", "-lineinfo"]
        macros.append(("FASTMOTION_WITH_CUDA", None))
        ext_cls = cpp_extension.CUDAExtension
    ext = ext_cls("fastmotion._C", sources, include_dirs=[os.path.abspath("csrc")],
                  define_macros=macros, extra_compile_args=args, extra_link_args=["-fopenmp"])
    build = cpp_extension.BuildExtension.with_options(use_ninja=True)
    return [ext], {"build_ext": build}


ext_modules, cmdclass = extensions()
setup(packages=PACKAGES, package_dir=PACKAGE_DIR, ext_modules=ext_modules, cmdclass=cmdclass)
