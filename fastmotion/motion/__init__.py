"""Motion: skeletons, the Free3D and HumanML3D representations, rotations, cameras and valid bodies."""
from .body import on_floor, rigid_body
from .camera import Cameras, estimate_camera_epnp, naive_root_depth, project, sample_cameras, weak_perspective
from .skeleton import (BVH_TO_SMPL22, SMPL22, SMPL22_REST_OFFSETS, Skeleton, bvh_joint_map, keypoints_to_smpl22,
                       rest_pose)

__all__ = ["BVH_TO_SMPL22", "Cameras", "SMPL22", "SMPL22_REST_OFFSETS", "Skeleton", "bvh_joint_map",
           "estimate_camera_epnp", "keypoints_to_smpl22", "naive_root_depth", "on_floor", "project", "rest_pose",
           "rigid_body", "sample_cameras", "weak_perspective"]
