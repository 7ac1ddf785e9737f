"""Input checks of every public op and of the Triton entry points, in one style.

Every error starts with the op and the argument, then says what was expected and what came:
    "rvq_search: x must be float32 or float64, got torch.int64"
TypeError for a wrong type or dtype; ValueError for a wrong shape, device or value.

The checks read metadata only (type, dtype, shape, device, strides): plain Python, no kernel launch and no
host-device sync, so a tiny call stays cheap and torch.compile traces them without a graph break. The exception
is the NaN/inf (and degenerate camera) check, `finite_flag` and `camera_and_keypoint_values`: on CPU tensors one
C++ pass over the data; on a GPU (where it needs a sync) only when asked for with `set_checks(values=True)`.
"""
from __future__ import annotations

import math
import operator
import os

import torch

from ._backends import _compiled_module, _triton_interpreted

FLOATS = (torch.float32, torch.float64)
_PARSED: dict = {}  # layout string -> alternatives; layouts are literals, so this stays small


def _parse(layout: str):
    parsed = _PARSED.get(layout)
    if parsed is None:
        alternatives = []
        for text in layout.split(" or "):
            tokens = [int(tok) if tok.isdigit() else tok for tok in (s.strip() for s in text.strip()[1:-1].split(","))
                      if tok]
            cut = tokens.index("...") if "..." in tokens else len(tokens)
            alternatives.append((tuple(tokens[:cut]), cut < len(tokens), tuple(tokens[cut + 1:])))
        parsed = _PARSED[layout] = tuple(alternatives)
    return parsed


def _dtype_names(dtypes) -> str:
    return " or ".join(str(d).removeprefix("torch.") for d in dtypes)


def _bind(op, name, shape, token, size, dims) -> None:
    bound = dims.get(token)
    if bound is None:
        dims[token] = (size, name, shape)
    elif bound[0] != size:
        raise ValueError(f"{op}: {name} has {token}={_size(size)} but {bound[1]} has {token}={_size(bound[0])} "
                         f"(shapes {tuple(shape)} and {tuple(bound[2])})")


def _size(size):
    return list(size) if isinstance(size, tuple) else size


_BINDINGS: dict = {}  # (layout, shape) -> the named sizes it binds: a call's checks repeat its previous calls'


def shape(op: str, name: str, value: torch.Tensor, layout: str, dims: dict | None = None) -> None:
    """Raise ValueError unless value's shape fits `layout`; named sizes are bound in, or compared with, `dims`."""
    size = value.shape
    if torch.compiler.is_compiling():  # hashing a symbolic size would specialise it: no cache while tracing
        bindings = _shape_bindings(op, name, size, layout)
    else:
        bindings = _BINDINGS.get((layout, size))
    if bindings is None:
        bindings = _shape_bindings(op, name, size, layout)  # raises for a shape that does not fit
        if len(_BINDINGS) > 4096:  # shapes seen by a long run with varying sizes: start over
            _BINDINGS.clear()
        _BINDINGS[(layout, size)] = bindings
    if dims is not None:
        for token, got in bindings:
            _bind(op, name, size, token, got, dims)


def _shape_bindings(op: str, name: str, size, layout: str) -> tuple:
    alternatives = _parse(layout)
    for head, ellipsis, tail in alternatives:
        fixed = len(head) + len(tail)
        if len(size) == fixed or (ellipsis and len(size) > fixed):
            break
    else:
        rank = f"{len(head)}-D " if len(alternatives) == 1 and not ellipsis else ""
        raise ValueError(f"{op}: {name} must be {rank}{layout}, got shape {tuple(size)}")
    pairs = zip(head, size) if not ellipsis else (*zip(head, size), *zip(tail, size[len(size) - len(tail):]))
    bindings = []
    for token, got in pairs:
        if type(token) is int:
            if got != token:
                raise ValueError(f"{op}: {name} must be {layout}, got shape {tuple(size)}")
        else:
            bindings.append((token, got))
    if ellipsis:
        bindings.append(("...", tuple(size[len(head):len(size) - len(tail)])))
    return tuple(bindings)


def tensor(op: str, name: str, value, layout: str, dims: dict | None = None, like=None, dtypes=FLOATS) -> None:
    """Raise unless `value` is a torch.Tensor of `layout` (see `shape`) with a dtype in `dtypes`.

    like: (name, tensor) that value must share the device with, and the dtype too when dtypes is FLOATS."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor {layout}, got {type(value).__name__}")
    _dtype_and_device(op, name, value, like, dtypes)
    shape(op, name, value, layout, dims)


def _dtype_and_device(op, name, value, like, dtypes) -> None:
    if value.dtype not in dtypes:
        raise TypeError(f"{op}: {name} must be {_dtype_names(dtypes)}, got {value.dtype}")
    if like is not None:
        other, ref = like
        if dtypes is FLOATS and value.dtype != ref.dtype:
            raise TypeError(f"{op}: {name} has dtype {value.dtype}, expected {ref.dtype} like {other}")
        if value.device != ref.device:
            raise ValueError(f"{op}: {name} is on {value.device} but {other} is on {ref.device}")


def broadcastable(op: str, name: str, value, layout: str, target: tuple, like) -> None:
    """Raise unless `value` is a float tensor like `like` that expands to the shape `target` (spelt `layout`)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor broadcastable to {layout}, got {type(value).__name__}")
    _dtype_and_device(op, name, value, like, FLOATS)
    size = value.shape
    if len(size) > len(target) or any(s != 1 and s != t for s, t in zip(reversed(size), reversed(target))):
        raise ValueError(f"{op}: {name} of shape {tuple(size)} does not broadcast to {layout} = {tuple(target)}")


def number(op: str, name: str, value, *, minimum: float | None = None, finite: bool = True) -> None:
    """Raise TypeError unless `value` is a Python int or float; ValueError if it is NaN, infinite (when `finite`),
    or below `minimum`."""
    if not isinstance(value, (int, float)):
        raise TypeError(f"{op}: {name} must be a number, got {type(value).__name__}")
    if value != value or (finite and not math.isfinite(value)) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{op}: {name} must be a {'finite ' if finite else ''}number{bound}, got {value!r}")


def integer(op: str, name: str, value, *, minimum: int | None = 0) -> None:
    """Raise TypeError unless `value` is an integer (int, numpy or 0-d integer tensor), ValueError below `minimum`."""
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{op}: {name} must be an int >= {minimum}, got {value}")


def choice(op: str, name: str, value, allowed: tuple) -> None:
    """Raise ValueError unless `value` is one of `allowed`."""
    if value not in allowed:
        names = ", ".join(map(repr, allowed[:-1])) + f" or {allowed[-1]!r}"
        raise ValueError(f"{op}: {name} must be {names}, got {value!r}")


# ---- the public ops (the kernels' entry points add their own, in kernels/*.py, from the pieces above) ----------

def rvq_search(x, codebooks, temperature, generator=None) -> None:
    """x [N, D], codebooks [L, K, D] of one float dtype and device, L, K, D >= 1; temperature >= 0 finite;
    generator None or a torch.Generator."""
    op, dims = "rvq_search", {}
    tensor(op, "x", x, "[N, D]", dims)
    tensor(op, "codebooks", codebooks, "[L, K, D]", dims, ("x", x))
    rvq_sizes(op, x, codebooks)
    number(op, "temperature", temperature, minimum=0)
    generator_or_none(op, generator)


def rvq_sizes(op: str, x, codebooks) -> None:
    """L, K, D >= 1 (N may be 0)."""
    levels, num_codes, dim = codebooks.shape
    if levels == 0 or num_codes == 0:
        raise ValueError(f"{op}: codebooks need L >= 1 levels and K >= 1 codes, got shape {tuple(codebooks.shape)}")
    if dim == 0:
        raise ValueError(f"{op}: x and codebooks need D >= 1, got shapes {tuple(x.shape)} and {tuple(codebooks.shape)}")


def generator_or_none(op: str, generator) -> None:
    """Raise TypeError unless `generator` is None or a torch.Generator."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{op}: generator must be a torch.Generator or None, got {type(generator).__name__}")


def camera(op: str, K, R, t, dims: dict, like) -> None:
    """K, R [B, 3, 3] and t [B, 3], B bound in `dims`."""
    tensor(op, "K", K, "[B, 3, 3]", dims, like)
    tensor(op, "R", R, "[B, 3, 3]", dims, like)
    tensor(op, "t", t, "[B, 3]", dims, like)


def project_weak_perspective(points, rotations, scale, offset) -> tuple:
    """points [B, T, J, 3]; rotations [B, V, 3, 3] or [V, 3, 3]; scale a number or broadcastable to [B, V];
    offset None or broadcastable to [B, V, 2]. Returns (B, V)."""
    op, dims = "project_weak_perspective", {}
    tensor(op, "points", points, "[B, T, J, 3]", dims)
    like = ("points", points)
    tensor(op, "rotations", rotations, "[B, V, 3, 3] or [V, 3, 3]", dims, like)
    batch_views = (points.shape[0], rotations.shape[-3])
    if not isinstance(scale, (int, float)):
        broadcastable(op, "scale", scale, "[B, V]", batch_views, like)
    if isinstance(offset, (int, float)):
        raise TypeError(f"{op}: offset must be None or a torch.Tensor broadcastable to [B, V, 2], got a number")
    if offset is not None:
        broadcastable(op, "offset", offset, "[B, V, 2]", (*batch_views, 2), like)
    return batch_views


def reprojection_loss(points, keypoints, K, R, t, weights, mask, velocity, min_depth, reduction) -> None:
    """points [B, T, J, 3], keypoints [B, T, J, 2], mask None or bool [B, T, J], camera, T >= 2 with velocity,
    min_depth a number (not NaN), reduction 'mean' | 'sum' | 'none', weights None or broadcastable to [B, T, J]."""
    op, dims = "reprojection_loss", {}
    tensor(op, "points", points, "[B, T, J, 3]", dims)
    like = ("points", points)
    tensor(op, "keypoints", keypoints, "[B, T, J, 2]", dims, like)
    if mask is not None:
        tensor(op, "mask", mask, "[B, T, J]", dims, like, dtypes=(torch.bool,))
    camera(op, K, R, t, dims, like)
    if velocity and points.shape[1] < 2:
        raise ValueError(f"{op}: velocity=True needs T >= 2 frames, got T={points.shape[1]}")
    choice(op, "reduction", reduction, ("mean", "sum", "none"))
    number(op, "min_depth", min_depth, finite=False)
    if weights is not None:
        broadcastable(op, "weights", weights, "[B, T, J]", points.shape[:-1], like)


def ray_project(points, keypoints, K, R, t) -> None:
    """points [B, ..., 3], keypoints [B, ..., 2] (the same middle dimensions), camera."""
    op, dims = "ray_project", {}
    tensor(op, "points", points, "[B, ..., 3]", dims)
    like = ("points", points)
    tensor(op, "keypoints", keypoints, "[B, ..., 2]", dims, like)
    camera(op, K, R, t, dims, like)


MAX_SAMPSON_PAIRS = 128  # the compiled kernels take the pairs by value (csrc/epipolar/sampson.h)


def sampson_consistency(views, F, pairs, mask, reduction) -> tuple:
    """views [V, B, T, J, 2]; F [P, B, 3, 3] or [P, 3, 3] like the views; pairs P (i, j) Python ints in [0, V)
    with i != j, P <= MAX_SAMPSON_PAIRS; mask None or bool [B, T] or [B, T, J]; reduction 'mean' | 'sum' | 'none'.
    Returns the pairs flattened (i0, j0, i1, j1, ...)."""
    op, dims = "sampson_consistency", {}
    tensor(op, "views", views, "[V, B, T, J, 2]", dims)
    like = ("views", views)
    tensor(op, "F", F, "[P, B, 3, 3] or [P, 3, 3]", dims, like)
    if F.requires_grad:
        raise ValueError(f"{op}: F must not require grad (the fundamental matrices are constants here: no backend "
                         "returns their gradient); pass F.detach()")
    if mask is not None:
        tensor(op, "mask", mask, "[B, T] or [B, T, J]", dims, like, dtypes=(torch.bool,))
    choice(op, "reduction", reduction, ("mean", "sum", "none"))
    if isinstance(pairs, torch.Tensor) or not isinstance(pairs, (list, tuple)):
        raise TypeError(f"{op}: pairs must be a list of (i, j) view indices (Python ints: a tensor would cost a "
                        f"host sync), got {type(pairs).__name__}")
    flat = []
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"{op}: pairs must hold (i, j) view index pairs, got {pair!r}")
        for v in pair:
            if isinstance(v, (bool, torch.Tensor)):
                raise TypeError(f"{op}: pairs must hold Python ints, got {type(v).__name__} {v!r}")
            integer(op, "pairs", v)
            if v >= views.shape[0]:
                raise ValueError(f"{op}: pairs names view {v} but views has V={views.shape[0]}")
        if pair[0] == pair[1]:
            raise ValueError(f"{op}: pairs must join two different views, got {tuple(pair)}")
        flat += [int(pair[0]), int(pair[1])]
    if len(pairs) != F.shape[0]:
        raise ValueError(f"{op}: pairs has {len(pairs)} pairs but F has P={F.shape[0]}")
    if len(pairs) > MAX_SAMPSON_PAIRS:
        raise ValueError(f"{op}: at most {MAX_SAMPSON_PAIRS} pairs per call, got {len(pairs)}")
    return tuple(flat)


def sample_view_rotations(num_views, batch, max_pitch, max_roll, max_yaw, generator, dtype) -> None:
    """num_views, batch (or None) ints >= 0; the angle bounds finite numbers; a torch.Generator or None; a float
    dtype."""
    op = "sample_view_rotations"
    integer(op, "num_views", num_views)
    if batch is not None:
        integer(op, "batch", batch)
    for name, value in (("max_pitch", max_pitch), ("max_roll", max_roll), ("max_yaw", max_yaw)):
        number(op, name, value)
    generator_or_none(op, generator)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{op}: dtype must be a floating-point torch.dtype, got {dtype!r}")


# ---- value checks: the only ones that read the data -------------------------------------------------------------
# On CPU tensors they run by default: one pass in C++ (fastmotion._C.values_ok, about a microsecond on a
# tiny call), or torch reductions where fastmotion._C is not built. On a GPU they cost a host-device sync per
# call, so they are off by default there; set_checks(values=True) or FASTMOTION_VALUE_CHECKS=1 turns them on
# everywhere, set_checks(values=False) / FASTMOTION_VALUE_CHECKS=0 off everywhere.

_VALUE_CHECKS = {"setting": None}  # None: automatic (CPU only); True / False: everywhere / nowhere


def _env_setting(text: str | None):
    text = (text or "auto").strip().lower()
    settings = {"auto": None, "1": True, "on": True, "true": True, "0": False, "off": False, "false": False}
    if text not in settings:
        raise ValueError(f"FASTMOTION_VALUE_CHECKS must be auto, 1/on or 0/off, got {text!r}")
    return settings[text]


def set_checks(values: bool | None = None) -> bool | None:
    """Where the fused ops check their inputs' values (NaN/inf in rvq_search's x and codebooks; in the cameras and
    unmasked keypoints of reprojection_loss and ray_project; a degenerate K). Shape, dtype and device checks read
    metadata only and always run.

    values: None (the default) checks CPU tensors only, where it costs about a microsecond per call; on a GPU a
    value check must read a flag back (one host-device sync per call), so it is skipped. True checks every
    device (debugging a NaN on a GPU), False none (inputs known good; a NaN then gives NaN outputs). The
    environment variable FASTMOTION_VALUE_CHECKS (auto | 1 | 0), read at import, sets the starting value.
    Returns the previous setting. Raises TypeError unless values is None or a bool."""
    if values is not None and not isinstance(values, bool):
        raise TypeError(f"set_checks: values must be None, True or False, got {values!r}")
    previous = _VALUE_CHECKS["setting"]
    _VALUE_CHECKS["setting"] = values
    return previous


def value_checks_on(value: torch.Tensor) -> bool:
    """Whether the value checks run for inputs on `value`'s device (see `set_checks`); never under torch.compile,
    where a data-dependent check would break the graph."""
    if torch.compiler.is_compiling():
        return False
    setting = _VALUE_CHECKS["setting"]
    return value.device.type == "cpu" if setting is None else setting


def _cpu_scan(*tensors):
    """fastmotion._C.values_ok (csrc/common/values.h) for plain CPU tensors when fastmotion._C is built, else None
    (the torch reductions check instead: other devices, tensor subclasses such as FakeTensor)."""
    if tensors[0].device.type != "cpu" or any(type(value) is not torch.Tensor for value in tensors):
        return None
    ext, _ = _compiled_module()
    return ext.values_ok if ext is not None else None


def finite_flag(*tensors: torch.Tensor):
    """True/False, or a 0-d bool tensor enqueued without waiting for the device: whether the tensors hold no
    NaN/inf. None when value checks are off for their device (`value_checks_on`).

    CPU tensors: the exact C++ scan (a Python bool). Otherwise a finite sum proves every element finite and costs
    one plain reduction per tensor; a non-finite sum (a NaN/inf, or merely an overflow) sends
    `raise_if_not_finite` to the exact per-element check."""
    if not value_checks_on(tensors[0]):
        return None
    scan = _cpu_scan(*tensors)
    if scan is not None:
        ok = scan(list(tensors), None, None, None)
        if ok is not None:
            return ok
    total = tensors[0].sum()
    for value in tensors[1:]:
        total = total + value.sum()
    return torch.isfinite(total)


def raise_if_not_finite(op: str, flag, *named: tuple) -> None:
    """Reads `flag` (on a GPU, one host-device sync); named: (name, tensor) pairs, checked exactly only when it is
    False. Raises ValueError naming the first argument holding a NaN or inf."""
    if flag is None or bool(flag):
        return
    for name, value in named:
        bad = int((~torch.isfinite(value)).sum())
        if bad:
            raise ValueError(f"{op}: {name} contains NaN or inf ({bad} of {value.numel()} values)")


def camera_and_keypoint_values(op: str, keypoints, mask, K, R, t, takes_mask: bool) -> None:
    """Raise ValueError for a NaN/inf keypoint the mask does not mark missing, a NaN/inf in K, R or t, or a
    degenerate K (fx * fy == 0); nothing when value checks are off for this device (`set_checks`). On CPU one C++
    scan decides; elsewhere one host sync when all is well (finite sums prove every element finite). The exact
    checks run only otherwise, the camera's only when its own flag is False (masked NaN keypoints are normal
    input)."""
    if not value_checks_on(keypoints):
        return
    scan = _cpu_scan(keypoints, K, R, t)
    verdict = None if scan is None else scan([K, R, t] if mask is not None else [K, R, t, keypoints],
                                             keypoints if mask is not None else None, mask, K)
    if verdict:
        return
    focal = K[:, 0, 0] * K[:, 1, 1]
    camera_sum, focal_ok = K.sum() + R.sum() + t.sum(), (focal != 0).all()
    if verdict is None and bool(torch.isfinite(keypoints.sum() + camera_sum) & focal_ok):
        return
    bad = ~torch.isfinite(keypoints).all(-1)
    if mask is not None:
        bad = bad & mask
    if bool(bad.any()):
        hint = " that the mask does not mark as missing (pass mask=False there)" if takes_mask else ""
        raise ValueError(f"{op}: keypoints contain NaN or inf at {int(bad.sum())} joint(s){hint}")
    if bool(torch.isfinite(camera_sum) & focal_ok):
        return
    for name, value in (("K", K), ("R", R), ("t", t)):
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{op}: {name} contains NaN or inf")
    if bool((focal == 0).any()):
        raise ValueError(f"{op}: K is degenerate (fx * fy == 0) for batch entries "
                         f"{torch.nonzero(focal == 0).flatten().tolist()[:8]}")


_VALUE_CHECKS["setting"] = _env_setting(os.environ.get("FASTMOTION_VALUE_CHECKS"))


# ---- the Triton entry points: canonical layouts, as the compiled ops take them ------------------------------------

def triton_inputs(op: str, *specs, optional: tuple = ()) -> dict:
    """Checks of a Triton entry point's tensors. specs: (name, tensor, layout) or (name, tensor, layout, dtypes);
    the first sets the dtype and device of the others. A tensor may be None only if its name is in `optional`.
    Every tensor must be contiguous (the kernels index it densely) and on a CUDA device, or on the CPU under
    TRITON_INTERPRET=1. Returns the named sizes (`shape`'s dims)."""
    dims: dict = {}
    like = None
    for name, value, layout, *dtypes in specs:
        if value is None and name in optional:
            continue
        tensor(op, name, value, layout, dims, like, dtypes[0] if dtypes else FLOATS)
        if like is None:
            like = (name, value)
            if not (value.is_cuda or (value.device.type == "cpu" and _triton_interpreted())):
                raise ValueError(f"{op}: {name} is on {value.device}; the Triton kernels take CUDA tensors (or CPU "
                                 "tensors with TRITON_INTERPRET=1)")
        if not value.is_contiguous():
            raise ValueError(f"{op}: {name} must be contiguous (the kernel indexes it densely), got strides "
                             f"{value.stride()}")
    return dims
