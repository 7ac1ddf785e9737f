"""A built-in synthetic corpus: procedurally animated SMPL-22 motions with captions, in HumanML3D's layout.

Each clip is one action or a composition of two (walk, run, jump, turn, wave, kick, squat, sit, side step,
stand), animated by joint angles (hip/knee/ankle flexion, arm swing, spine lean) on a rest skeleton scaled to a
random body size, posed by forward kinematics, then grounded: the lowest foot touches the floor except in a
jump's flight, and the root advances along the body's heading at the action's speed. Deterministic for a seed.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from fastmotion.motion.skeleton import SMPL22, SMPL22_REST_OFFSETS

FPS = 20
SUBJECT = re.compile(r"^(a person|someone|a man) ")
J = {name: i for i, name in enumerate(SMPL22.names)}


def _rot(axis: str, angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    o, z = np.ones_like(angle), np.zeros_like(angle)
    rows = {"x": [[o, z, z], [z, c, -s], [z, s, c]], "y": [[c, z, s], [z, o, z], [-s, z, c]],
            "z": [[c, -s, z], [s, c, z], [z, z, o]]}[axis]
    return np.stack([np.stack(r, -1) for r in rows], -2)


class Pose:
    """Per-frame joint angles (radians) of one clip, filled in by the actions; see `_angles_to_rotations`."""
    KEYS = ("hip_l", "hip_r", "knee_l", "knee_r", "ankle_l", "ankle_r", "hip_abd_l", "hip_abd_r", "spine",
            "shoulder_l", "shoulder_r", "raise_l", "raise_r", "elbow_l", "elbow_r", "neck", "lift")

    def __init__(self, frames: int):
        self.frames = frames
        self.a = {k: np.zeros(frames) for k in self.KEYS}
        self.speed = np.zeros(frames)  # metres per second along the heading
        self.yaw_rate = np.zeros(frames)  # radians per second
        self.side_speed = np.zeros(frames)  # metres per second to the body's left
        self.flight = np.zeros(frames)  # metres above the grounded height (jumps)


def _walk(p: Pose, sl: slice, rng, *, run=False, backwards=False, turn=0.0, side=0.0):
    n = sl.stop - sl.start
    freq = rng.uniform(1.6, 2.0) if run else rng.uniform(0.8, 1.1)  # strides per second
    speed = rng.uniform(2.5, 4.0) if run else rng.uniform(0.8, 1.6)
    amp = 0.7 if run else rng.uniform(0.35, 0.5)
    phase = 2 * math.pi * freq * np.arange(n) / FPS + rng.uniform(0, 2 * math.pi)
    ramp = np.clip(np.minimum(np.arange(n), n - 1 - np.arange(n)) / 6.0, 0, 1)  # start and stop smoothly
    a = p.a
    for leg, sign in (("l", 1.0), ("r", -1.0)):
        swing = sign * np.sin(phase)
        a["hip_" + leg][sl] += -amp * swing * ramp * (1 if abs(side) < 1e-9 else 0.3)
        a["knee_" + leg][sl] += (1.3 if run else 0.9) * np.maximum(0, np.sin(phase + sign * math.pi / 2 + 0.6)) * ramp
        a["ankle_" + leg][sl] += 0.2 * swing * ramp
        a["hip_abd_" + leg][sl] += sign * 0.15 * abs(side) * np.maximum(0, swing) * ramp
        a["shoulder_" + leg][sl] += (0.9 if run else 0.4) * swing * ramp  # arms swing against the legs
        a["elbow_" + leg][sl] += (1.4 if run else 0.3) * ramp
    a["spine"][sl] += (0.25 if run else 0.05) * ramp
    p.speed[sl] += (-1 if backwards else 1) * speed * ramp * (1 if abs(side) < 1e-9 else 0)
    p.side_speed[sl] += side * ramp
    p.yaw_rate[sl] += turn * ramp
    return speed


def _jump(p: Pose, sl: slice, rng, forward=False):
    n = sl.stop - sl.start
    height = rng.uniform(0.15, 0.45)
    t = np.arange(n) / max(n - 1, 1)
    crouch = np.exp(-((t - 0.3) / 0.1) ** 2) + np.exp(-((t - 0.8) / 0.08) ** 2) * 0.7  # take-off and landing
    flight = np.clip(1 - ((t - 0.55) / 0.17) ** 2, 0, None)
    a = p.a
    for leg in "lr":
        a["hip_" + leg][sl] += -1.0 * crouch
        a["knee_" + leg][sl] += 1.6 * crouch
        a["ankle_" + leg][sl] += -0.4 * crouch + 0.5 * flight
        a["raise_" + leg][sl] += 1.5 * flight  # arms up in the air
    a["spine"][sl] += 0.4 * crouch
    p.flight[sl] += height * flight
    if forward:
        p.speed[sl] += rng.uniform(1.0, 2.0) * flight


def _wave(p: Pose, sl: slice, rng, hand="r"):
    n = sl.stop - sl.start
    t = np.arange(n) / FPS
    up = np.clip(np.minimum(np.arange(n), n - 1 - np.arange(n)) / 5.0, 0, 1)
    p.a["raise_" + hand][sl] += 2.4 * up
    p.a["elbow_" + hand][sl] += (0.6 + 0.5 * np.sin(2 * math.pi * rng.uniform(1.5, 2.5) * t)) * up


def _kick(p: Pose, sl: slice, rng, leg="r"):
    n = sl.stop - sl.start
    t = np.arange(n) / max(n - 1, 1)
    kick = np.exp(-((t - 0.5) / 0.15) ** 2)
    chamber = np.exp(-((t - 0.38) / 0.1) ** 2)
    p.a["hip_" + leg][sl] += -rng.uniform(1.0, 1.5) * kick
    p.a["knee_" + leg][sl] += 1.4 * chamber
    p.a["spine"][sl] += -0.2 * kick
    other = "l" if leg == "r" else "r"
    p.a["shoulder_" + other][sl] += 0.5 * kick


def _squat(p: Pose, sl: slice, rng, hold=False):
    n = sl.stop - sl.start
    t = np.arange(n) / max(n - 1, 1)
    depth = np.sin(math.pi * t) if not hold else np.clip(np.minimum(t, 1 - t) / 0.2, 0, 1)
    depth = depth * rng.uniform(0.7, 1.0)
    for leg in "lr":
        p.a["hip_" + leg][sl] += -1.6 * depth
        p.a["knee_" + leg][sl] += 2.0 * depth
        p.a["ankle_" + leg][sl] += -0.5 * depth
        p.a["shoulder_" + leg][sl] += (0.0 if hold else 1.4) * depth  # arms forward for balance
    p.a["spine"][sl] += (0.25 if hold else 0.5) * depth


def _stand(p: Pose, sl: slice, rng):
    n = sl.stop - sl.start
    p.a["spine"][sl] += 0.03 * np.sin(2 * math.pi * 0.3 * np.arange(n) / FPS)


@dataclass(frozen=True)
class Action:
    name: str
    seconds: tuple[float, float]
    captions: tuple[str, ...]  # {speed} {direction} filled per clip


ACTIONS = {
    "walk": Action("walk", (2.5, 5.0), ("a person walks {direction}", "someone walks {direction} {speed}",
                                        "a person takes a few steps {direction}", "a man walks in a straight line")),
    "run": Action("run", (2.0, 4.0), ("a person runs {direction}", "someone jogs {direction} quickly",
                                      "a person is running", "a man sprints {direction}")),
    "jump": Action("jump", (1.2, 2.0), ("a person jumps up", "someone jumps in place",
                                        "a person hops with both feet", "a man jumps with his arms up")),
    "jump_forward": Action("jump_forward", (1.2, 2.0), ("a person jumps forward", "someone leaps ahead",
                                                        "a person does a long jump")),
    "turn": Action("turn", (2.0, 3.5), ("a person turns around", "someone walks in a circle",
                                        "a person turns {turn_dir} while walking", "a man walks and turns")),
    "wave": Action("wave", (2.0, 3.5), ("a person waves {hand_word} hand", "someone waves hello",
                                        "a person raises {hand_word} arm and waves")),
    "kick": Action("kick", (1.2, 2.0), ("a person kicks with {leg_word} leg", "someone kicks forward",
                                        "a person does a kick")),
    "squat": Action("squat", (1.5, 3.0), ("a person squats down and stands up", "someone does a squat",
                                          "a person bends their knees and rises")),
    "sit": Action("sit", (2.5, 4.0), ("a person crouches down and stays low", "someone sits down on their heels",
                                      "a person lowers into a deep squat and holds it")),
    "side_step": Action("side_step", (2.0, 3.5), ("a person steps to the {side_word}",
                                                  "someone side steps {side_word}",
                                                  "a person shuffles sideways to the {side_word}")),
    "stand": Action("stand", (1.5, 3.0), ("a person stands still", "someone stands in place",
                                          "a person waits, standing")),
}


def _animate(name, pose, sl, rng, words):
    if name == "walk":
        backwards = rng.random() < 0.15
        speed = _walk(pose, sl, rng, backwards=backwards)
        words.update(direction="backwards" if backwards else "forward", speed="slowly" if speed < 1.1 else "briskly")
    elif name == "run":
        _walk(pose, sl, rng, run=True)
        words.update(direction="forward")
    elif name in ("jump", "jump_forward"):
        _jump(pose, sl, rng, forward=name == "jump_forward")
    elif name == "turn":
        rate = rng.choice([-1, 1]) * rng.uniform(1.2, 2.2)
        _walk(pose, sl, rng, turn=rate)
        words.update(turn_dir="left" if rate > 0 else "right")
    elif name == "wave":
        hand = "r" if rng.random() < 0.7 else "l"
        _wave(pose, sl, rng, hand)
        words.update(hand_word="his right" if hand == "r" else "his left")
    elif name == "kick":
        leg = "r" if rng.random() < 0.7 else "l"
        _kick(pose, sl, rng, leg)
        words.update(leg_word="the right" if leg == "r" else "the left")
    elif name == "squat":
        _squat(pose, sl, rng)
    elif name == "sit":
        _squat(pose, sl, rng, hold=True)
    elif name == "side_step":
        side = rng.choice([-1, 1]) * rng.uniform(0.5, 0.9)
        _walk(pose, sl, rng, side=side)
        words.update(side_word="left" if side > 0 else "right")
    else:
        _stand(pose, sl, rng)


def _angles_to_rotations(pose: Pose) -> np.ndarray:
    """Local rotations [T, 22, 3, 3] of every joint from the pose angles (x: flexion, z: abduction/arm raise)."""
    T, a = pose.frames, pose.a
    rot = np.broadcast_to(np.eye(3), (T, 22, 3, 3)).copy()
    for leg, j_hip, j_knee, j_ankle, sign in (("l", 1, 4, 7, 1.0), ("r", 2, 5, 8, -1.0)):
        rot[:, j_hip] = _rot("x", a["hip_" + leg]) @ _rot("z", sign * a["hip_abd_" + leg])
        rot[:, j_knee] = _rot("x", a["knee_" + leg])
        rot[:, j_ankle] = _rot("x", a["ankle_" + leg])
    rot[:, J["spine1"]] = _rot("x", 0.5 * a["spine"])
    rot[:, J["spine2"]] = _rot("x", 0.3 * a["spine"])
    rot[:, J["spine3"]] = _rot("x", 0.2 * a["spine"])
    rot[:, J["neck"]] = _rot("x", a["neck"] - 0.6 * a["spine"])  # keep looking ahead
    for side, j_sh, j_el, sign in (("l", 16, 18, 1.0), ("r", 17, 19, -1.0)):
        down = -sign * (1.25 - a["raise_" + side])  # arms hang by the sides; "raise" lifts them sideways
        rot[:, j_sh] = _rot("x", -a["shoulder_" + side]) @ _rot("z", down)
        rot[:, j_el] = _rot("y", -sign * a["elbow_" + side])  # bends forward from a hanging arm
    return rot


def forward_kinematics(rotations: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Local rotations [T, 22, 3, 3] and rest offsets [22, 3] -> joints [T, 22, 3] relative to the root."""
    T = rotations.shape[0]
    world = np.empty_like(rotations)
    joints = np.zeros((T, 22, 3))
    for j, p in enumerate(SMPL22.parents):
        if p < 0:
            world[:, j] = rotations[:, j]
            continue
        joints[:, j] = joints[:, p] + world[:, p] @ offsets[j]
        world[:, j] = world[:, p] @ rotations[:, j]
    return joints


def synth_clip(rng: np.random.Generator) -> tuple[np.ndarray, list[str], str]:
    """One clip: joints [T, 22, 3] (metres, y up, 20 fps), its captions, and its action label."""
    names = list(ACTIONS)
    first = names[rng.integers(len(names))]
    others = [n for n in names if n != first]
    plan = [first] if rng.random() < 0.6 else [first, others[rng.integers(len(others))]]
    lengths = [int(rng.uniform(*ACTIONS[n].seconds) * FPS) for n in plan]
    pose = Pose(sum(lengths))
    captions_per_action, start = [], 0
    for name, n in zip(plan, lengths):
        words = {}
        _animate(name, pose, slice(start, start + n), rng, words)
        templates = list(ACTIONS[name].captions)
        rng.shuffle(templates)
        captions_per_action.append([t.format(**{**dict(direction="forward", speed="", turn_dir="left",
                                                        hand_word="his", leg_word="one", side_word="side"),
                                                     **words}).replace("  ", " ").strip() for t in templates])
        start += n
    height = rng.uniform(0.85, 1.15)  # body size relative to the average adult
    offsets = SMPL22_REST_OFFSETS * height * rng.uniform(0.95, 1.05, size=(22, 1))
    joints = forward_kinematics(_angles_to_rotations(pose), offsets)
    # root path: heading integrates the yaw rate; steps advance along the heading (and sideways)
    heading = rng.uniform(0, 2 * math.pi) + np.cumsum(pose.yaw_rate) / FPS
    yaw = _rot("y", heading)
    joints = np.einsum("tij,tkj->tki", yaw, joints)
    forward = np.stack([np.sin(heading), np.zeros_like(heading), np.cos(heading)], -1)
    left = np.stack([np.cos(heading), np.zeros_like(heading), -np.sin(heading)], -1)
    step = (pose.speed[:, None] * forward + pose.side_speed[:, None] * left) / FPS
    root = np.cumsum(step, 0) + np.array([rng.uniform(-1, 1), 0.0, rng.uniform(-1, 1)])
    joints = joints + root[:, None]
    joints[..., 1] -= joints[..., 1].min(1, keepdims=True)  # the lowest joint on the floor ...
    joints[..., 1] += pose.flight[:, None]  # ... except in flight
    if len(plan) == 1:
        texts = captions_per_action[0][:3]
    else:
        first, second = captions_per_action
        texts = [f"{first[i % len(first)]}{' and then' if i == 1 else ', then'} "
                 f"{SUBJECT.sub('', second[i % len(second)])}" for i in range(3)]
    return joints.astype(np.float32), texts, "+".join(plan)
