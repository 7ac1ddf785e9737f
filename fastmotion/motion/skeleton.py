"""Skeletons: SMPL-22 (HumanML3D's joint order, named as smplx names SMPL's first 22 joints) and the maps from
other keypoint layouts (COCO-17, Human3.6M-17) and from BVH skeletons (by joint name) onto it.

Conventions (../shared/DESIGN.md): metres, y up, the body faces +z in the rest pose, left is +x.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Skeleton:
    names: tuple[str, ...]
    parents: tuple[int, ...]  # -1 for the root; every parent comes before its children
    left_right: tuple[tuple[int, int], ...]  # (left joint, right joint) pairs, for mirroring
    hips: tuple[int, int]  # (left hip, right hip): their cross product with up gives the body's forward
    shoulders: tuple[int, int]  # (left shoulder, right shoulder)
    # left ankle, left foot, right ankle, right foot (HumanML3D's foot-contact joints); () for keypoint layouts
    feet: tuple[int, ...] = ()

    @property
    def num_joints(self) -> int:
        return len(self.names)

    @property
    def limbs(self) -> tuple[tuple[int, int], ...]:
        """(parent, child) for every non-root joint, in joint order: limb k ends at joint k + 1."""
        return tuple((p, j) for j, p in enumerate(self.parents) if p >= 0)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"joint {name!r} is not in this skeleton ({', '.join(self.names)})") from None

    def root_position(self, points):
        """The hip centre [..., C] of points [..., J, C] (numpy or torch): the pelvis joint where the skeleton has
        one (SMPL-22, Human3.6M-17, OpenPose-25's mid-hip), else the hips' midpoint (COCO-17, OpenPose-18)."""
        for name in ("pelvis", "mid_hip"):
            if name in self.names:
                return points[..., self.names.index(name), :]
        left, right = self.hips
        return 0.5 * (points[..., left, :] + points[..., right, :])

    def mirror_permutation(self) -> np.ndarray:
        perm = np.arange(self.num_joints)
        for left, right in self.left_right:
            perm[left], perm[right] = right, left
        return perm


# smplx.joint_names.JOINT_NAMES[:22]: the SMPL body joints in the order HumanML3D stores them.
SMPL22_NAMES = ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
                "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
                "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist")
SMPL22 = Skeleton(
    names=SMPL22_NAMES,
    parents=(-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19),
    left_right=((1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21)),
    feet=(7, 10, 8, 11),
    hips=(1, 2),
    shoulders=(16, 17),
)

# Rest pose of an average adult (T-pose, metres): offset of each joint from its parent. Used by the synthetic
# corpus, BVH writing and the Free3D representation's default bone structure.
SMPL22_REST_OFFSETS = np.array([
    [0.0, 0.93, 0.0], [0.06, -0.09, 0.0], [-0.06, -0.09, 0.0], [0.0, 0.11, -0.01], [0.04, -0.38, 0.0],
    [-0.04, -0.38, 0.0], [0.0, 0.13, 0.01], [-0.01, -0.40, -0.04], [0.01, -0.40, -0.04], [0.0, 0.05, 0.02],
    [0.03, -0.06, 0.12], [-0.03, -0.06, 0.12], [0.0, 0.21, -0.03], [0.07, 0.11, -0.01], [-0.07, 0.11, -0.01],
    [0.0, 0.09, 0.05], [0.11, 0.04, -0.02], [-0.11, 0.04, -0.02], [0.26, 0.0, -0.02], [-0.26, 0.0, -0.02],
    [0.25, 0.0, 0.0], [-0.25, 0.0, 0.0]])


def rest_pose(offsets: np.ndarray = SMPL22_REST_OFFSETS, skeleton: Skeleton = SMPL22) -> np.ndarray:
    """Joint positions [J, 3] of the rest pose (the root offset is its position)."""
    joints = np.zeros_like(offsets)
    for j, p in enumerate(skeleton.parents):
        joints[j] = offsets[j] + (joints[p] if p >= 0 else 0.0)
    return joints


# 2D keypoint layouts -> SMPL-22. Values: the SMPL-22 joint each keypoint stands for (joints without a
# counterpart stay missing and are masked). Midpoints (the pelvis of COCO) are built by `keypoints_to_smpl22`.
COCO17_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                "right_knee", "left_ankle", "right_ankle")
COCO17_TO_SMPL22 = {"left_shoulder": "left_shoulder", "right_shoulder": "right_shoulder",
                    "left_elbow": "left_elbow", "right_elbow": "right_elbow", "left_wrist": "left_wrist",
                    "right_wrist": "right_wrist", "left_hip": "left_hip", "right_hip": "right_hip",
                    "left_knee": "left_knee", "right_knee": "right_knee", "left_ankle": "left_ankle",
                    "right_ankle": "right_ankle", "nose": "head"}
H36M17_NAMES = ("pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "spine",
                "thorax", "neck_nose", "head_top", "left_shoulder", "left_elbow", "left_wrist", "right_shoulder",
                "right_elbow", "right_wrist")
H36M17_TO_SMPL22 = {"pelvis": "pelvis", "right_hip": "right_hip", "right_knee": "right_knee",
                    "right_ankle": "right_ankle", "left_hip": "left_hip", "left_knee": "left_knee",
                    "left_ankle": "left_ankle", "spine": "spine2", "thorax": "spine3", "neck_nose": "neck",
                    "head_top": "head", "left_shoulder": "left_shoulder", "left_elbow": "left_elbow",
                    "left_wrist": "left_wrist", "right_shoulder": "right_shoulder", "right_elbow": "right_elbow",
                    "right_wrist": "right_wrist"}
# OpenPose's COCO-18 and BODY_25 outputs (its "Neck" is the shoulders' midpoint, "MidHip" the hips')
OPENPOSE18_NAMES = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
                    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
                    "right_eye", "left_eye", "right_ear", "left_ear")
OPENPOSE25_NAMES = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
                    "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
                    "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe",
                    "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")
_LIMBS = {n: n for n in ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                         "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")}
OPENPOSE18_TO_SMPL22 = {**_LIMBS, "nose": "head", "neck": "neck"}
OPENPOSE25_TO_SMPL22 = {**OPENPOSE18_TO_SMPL22, "mid_hip": "pelvis", "left_big_toe": "left_foot",
                        "right_big_toe": "right_foot"}
LAYOUTS = {"coco17": (COCO17_NAMES, COCO17_TO_SMPL22), "h36m17": (H36M17_NAMES, H36M17_TO_SMPL22),
           "openpose18": (OPENPOSE18_NAMES, OPENPOSE18_TO_SMPL22),
           "openpose25": (OPENPOSE25_NAMES, OPENPOSE25_TO_SMPL22)}


def keypoint_skeleton(names: tuple[str, ...], parent_of: dict[str, str]) -> Skeleton:
    """A keypoint layout's kinematic tree: `parent_of` maps every joint but the root (the first name) to its
    parent; left/right pairs are matched by name. Raises ValueError on a malformed tree."""
    parents = tuple(-1 if i == 0 else names.index(parent_of[n]) for i, n in enumerate(names))
    if any(p >= i for i, p in enumerate(parents) if i) or set(parent_of) != set(names[1:]):
        raise ValueError(f"not a tree over {names} with parents before children: {parent_of}")
    pairs = tuple((names.index(n), names.index(n.replace("left", "right"))) for n in names if n.startswith("left_"))
    return Skeleton(names, parents, pairs, hips=(names.index("left_hip"), names.index("right_hip")),
                    shoulders=(names.index("left_shoulder"), names.index("right_shoulder")))


def _chains(*chains: str) -> dict[str, str]:
    """'a b c' -> {b: a, c: b} for each chain, merged."""
    out = {}
    for chain in chains:
        joints = chain.split()
        out.update({child: parent for parent, child in zip(joints, joints[1:])})
    return out


def _arms_legs(shoulder_parent: str, hip_parent: str) -> list[str]:
    """The four limb chains, hanging from the given joints."""
    return [f"{top} {side}_{a} {side}_{b} {side}_{c}" for side in ("left", "right")
            for top, (a, b, c) in ((shoulder_parent, ("shoulder", "elbow", "wrist")),
                                   (hip_parent, ("hip", "knee", "ankle")))]


# The layouts' kinematic trees (MVLift lifts any of them natively; drawing uses them). COCO-17 and OpenPose have no
# pelvis: the hips hang from the shoulders (COCO) or the neck (OpenPose-18), the tree's root is the nose.
COCO17 = keypoint_skeleton(COCO17_NAMES, _chains(
    "nose left_eye left_ear", "nose right_eye right_ear", "nose left_shoulder left_elbow left_wrist",
    "nose right_shoulder right_elbow right_wrist", "left_shoulder left_hip left_knee left_ankle",
    "right_shoulder right_hip right_knee right_ankle"))
H36M17 = keypoint_skeleton(H36M17_NAMES, _chains(
    "pelvis spine thorax neck_nose head_top", *_arms_legs("thorax", "pelvis")))
OPENPOSE18 = keypoint_skeleton(OPENPOSE18_NAMES, _chains(
    "nose neck", "nose right_eye right_ear", "nose left_eye left_ear", *_arms_legs("neck", "neck")))
OPENPOSE25 = keypoint_skeleton(OPENPOSE25_NAMES, _chains(
    "nose neck mid_hip", "nose right_eye right_ear", "nose left_eye left_ear", *_arms_legs("neck", "mid_hip"),
    "left_ankle left_big_toe left_small_toe", "left_ankle left_heel", "right_ankle right_big_toe right_small_toe",
    "right_ankle right_heel"))
SKELETONS = {"smpl22": SMPL22, "coco17": COCO17, "h36m17": H36M17, "openpose18": OPENPOSE18,
             "openpose25": OPENPOSE25}


def keypoints_to_smpl22(keypoints: np.ndarray, layout: str, confidence: np.ndarray | None = None,
                        min_confidence: float = 0.0, with_confidence: bool = False):
    """Keypoints [T, K, 2] in `layout` (a key of LAYOUTS) -> SMPL-22 keypoints [T, 22, 2] and mask [T, 22].

    Joints the layout lacks are NaN with mask False; keypoints with confidence <= min_confidence are missing.
    A layout without a pelvis (COCO, OpenPose-18) gets the hips' midpoint where both hips are seen.
    with_confidence: also return the SMPL-22 joints' confidences [T, 22] (0 where missing; the pelvis of a
    midpoint: the lower of the hips')."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    names, mapping = LAYOUTS[layout]
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (len(names), 2):
        raise ValueError(f"{layout} keypoints must be [T, {len(names)}, 2], got {keypoints.shape}")
    seen = np.isfinite(keypoints).all(-1)
    if confidence is not None:
        seen &= np.asarray(confidence) > min_confidence
    given = np.ones(seen.shape) if confidence is None else np.nan_to_num(np.asarray(confidence, np.float64))
    out = np.full((keypoints.shape[0], SMPL22.num_joints, 2), np.nan)
    mask = np.zeros(out.shape[:2], dtype=bool)
    conf = np.zeros(out.shape[:2])
    for src, dst in mapping.items():
        i, j = names.index(src), SMPL22.index(dst)
        out[seen[:, i], j] = keypoints[seen[:, i], i]
        mask[:, j] = seen[:, i]
        conf[:, j] = np.where(seen[:, i], given[:, i], 0.0)
    if "pelvis" not in mapping.values():
        left, right = names.index("left_hip"), names.index("right_hip")
        both = seen[:, left] & seen[:, right]
        out[both, 0] = 0.5 * (keypoints[both, left] + keypoints[both, right])
        mask[:, 0] = both
        conf[:, 0] = np.where(both, np.minimum(given[:, left], given[:, right]), 0.0)
    return (out, mask, conf.clip(0, 1)) if with_confidence else (out, mask)


# BVH joint names -> SMPL-22 (first match wins). Covers CMU (cgspeed conversion), Mixamo and common variants;
# extend it with `BVH_TO_SMPL22.update({...})` or pass your own table to the BVH reader.
BVH_TO_SMPL22 = {
    "pelvis": ("Hips", "mixamorig:Hips", "Pelvis", "hip"),
    "left_hip": ("LeftHip", "LeftUpLeg", "mixamorig:LeftUpLeg", "LThigh", "lThigh"),
    "right_hip": ("RightHip", "RightUpLeg", "mixamorig:RightUpLeg", "RThigh", "rThigh"),
    "spine1": ("lowerback", "Spine", "mixamorig:Spine", "LowerBack", "abdomen"),
    "left_knee": ("LeftKnee", "LeftLeg", "mixamorig:LeftLeg", "LShin", "lShin"),
    "right_knee": ("RightKnee", "RightLeg", "mixamorig:RightLeg", "RShin", "rShin"),
    "spine2": ("Chest", "Spine1", "mixamorig:Spine1", "chest"),
    "left_ankle": ("LeftAnkle", "LeftFoot", "mixamorig:LeftFoot", "LFoot", "lFoot"),
    "right_ankle": ("RightAnkle", "RightFoot", "mixamorig:RightFoot", "RFoot", "rFoot"),
    "spine3": ("Chest2", "Spine2", "mixamorig:Spine2", "Chest3"),
    "left_foot": ("LeftToe", "LeftToeBase", "mixamorig:LeftToeBase", "LToe"),
    "right_foot": ("RightToe", "RightToeBase", "mixamorig:RightToeBase", "RToe"),
    "neck": ("Neck", "lowerneck", "mixamorig:Neck", "neck"),
    "left_collar": ("LeftCollar", "LeftShoulder", "mixamorig:LeftShoulder", "lCollar"),
    "right_collar": ("RightCollar", "RightShoulder", "mixamorig:RightShoulder", "rCollar"),
    "head": ("Head", "mixamorig:Head", "head"),
    "left_shoulder": ("LeftShoulder", "LeftArm", "mixamorig:LeftArm", "lShldr", "LUpArm"),
    "right_shoulder": ("RightShoulder", "RightArm", "mixamorig:RightArm", "rShldr", "RUpArm"),
    "left_elbow": ("LeftElbow", "LeftForeArm", "mixamorig:LeftForeArm", "lForeArm", "LLowArm"),
    "right_elbow": ("RightElbow", "RightForeArm", "mixamorig:RightForeArm", "rForeArm", "RLowArm"),
    "left_wrist": ("LeftWrist", "LeftHand", "mixamorig:LeftHand", "lHand"),
    "right_wrist": ("RightWrist", "RightHand", "mixamorig:RightHand", "rHand"),
}


def bvh_joint_map(bvh_names, table: dict | None = None, optional=()) -> list:
    """For each SMPL-22 joint, the index of its BVH joint: the first candidate of `table` that the file has and
    that no earlier SMPL joint took (so Mixamo's LeftShoulder becomes the collar and LeftArm the shoulder, while
    CMU's LeftCollar takes the collar and leaves LeftShoulder to the shoulder). Joints named in `optional` are
    None when missing, or when their candidates are taken; the others raise ValueError."""
    table = table or BVH_TO_SMPL22
    bvh_names = list(bvh_names)
    taken, out = set(), []
    for name in SMPL22_NAMES:
        candidates = (name,) + tuple(table.get(name, ()))  # SMPL's own names first (files this project writes)
        found = next((bvh_names.index(c) for c in candidates
                      if c in bvh_names and bvh_names.index(c) not in taken), None)
        if found is None and name not in optional:
            raise ValueError(f"no BVH joint for SMPL joint {name!r}: tried {', '.join(table.get(name, ()))}; "
                             f"the file has {', '.join(bvh_names)} (extend fastmotion.motion.BVH_TO_SMPL22)")
        if found is not None:
            taken.add(found)
        out.append(found)
    return out
