"""Checkpoint files: atomic writes, checked reads, and a one-line description of what a file holds.

A checkpoint is a dict saved by `torch.save` with at least "kind" (the model class), "step", "model" (its
state dict) and "model_config"; training runs add the optimiser, schedule, configs and "best".
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from fastmotion.errors import CheckpointError

CHECKPOINT = "last.pt"  # a run's latest checkpoint
BEST = "best.pt"  # a run's weights with the best validation figure so far


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write `payload` to `path` through a temporary file and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # atomic: a crash leaves the previous checkpoint intact


# Per model kind, config keys added after checkpoints were first written, with the value an older checkpoint
# implies: filled in on load, so that such a checkpoint still loads and resumes.
ADDED_CONFIG_KEYS = {
    "LineDenoiser": {"skeleton": "smpl22"},  # MVLift trained on SMPL-22 only before issue 26
    # the text-to-motion transformers only prepended the caption feature before 2026-12-01 (issue 28)
    "T2M-mask": {"cond_every_token": False}, "T2M-res": {"cond_every_token": False},
}


def load_checkpoint(path, kind: str | None = None, model_config: dict | None = None) -> dict:
    """Load a checkpoint (on the CPU, weights only), checking that it holds the expected model kind and
    configuration.

    Raises:
        CheckpointError: the file is missing or unreadable, not a fastmotion checkpoint, of another kind, or of
            another model configuration than `model_config`.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (torch raises many types for a bad file)
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err})") from None
    if not isinstance(payload, dict) or "kind" not in payload:
        raise CheckpointError(f"{path} is not a fastmotion checkpoint")
    if kind is not None and payload["kind"] != kind:
        raise CheckpointError(f"{path} holds a {payload['kind']} model, expected {kind}")
    stored = payload.get("model_config")
    if isinstance(stored, dict):
        payload["model_config"] = {**ADDED_CONFIG_KEYS.get(payload["kind"], {}), **stored}
    if model_config is not None and payload["model_config"] != model_config:
        changed = {k for k in set(model_config) | set(payload["model_config"])
                   if model_config.get(k) != payload["model_config"].get(k)}
        raise CheckpointError(f"{path} was trained with another model configuration (differs in "
                            f"{', '.join(sorted(changed))}); use a fresh --out folder or the same --config")
    return payload


def describe_checkpoint(path) -> str:
    """One line saying what a checkpoint file holds: its kind, step, and whether it is the run's best (by which
    validation figure) or its last. Reads the file memory-mapped, so large checkpoints cost little.

    Raises:
        CheckpointError: the file is missing or not a fastmotion checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    payload = None
    for mmap in (True, False):  # files in torch's legacy format cannot be memory-mapped
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            break
        except Exception as err:  # noqa: BLE001
            problem = f"checkpoint {path} cannot be read ({type(err).__name__}: {err})"
    if payload is None:
        raise CheckpointError(problem)
    if not isinstance(payload, dict) or "kind" not in payload or "step" not in payload:
        raise CheckpointError(f"{path} is not a fastmotion checkpoint")
    total = (payload.get("train_config") or {}).get("steps")
    text = f"{path}: {payload['kind']} at step {payload['step']}" + (f" of {total}" if total else "")
    best = payload.get("best")
    if best and best.get("step") == payload["step"] and path.name == BEST:
        text += f", the run's best by {best['metric']} = {best['value']:.4g}"
    elif path.name == CHECKPOINT:
        text += ", the run's last checkpoint"
        if best:
            text += f" (its best, by {best['metric']} = {best['value']:.4g}, is step {best['step']}: {BEST})"
    return text
