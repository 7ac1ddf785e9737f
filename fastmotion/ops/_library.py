"""Fake (meta) kernels for the ops fastmotion._C registers with torch.library, so torch.compile and
FakeTensor tracing know output shapes without running a kernel."""
import torch

_registered = False


def register_fake_kernels() -> None:
    global _registered
    if _registered:
        return
    _registered = True

    @torch.library.register_fake("fastmotion::rvq_search")
    def _rvq_search_fake(x, codebooks, temperature, seed):
        n, d = x.shape
        levels = codebooks.shape[0]
        return x.new_empty((n, levels), dtype=torch.int64), x.new_empty((n, d)), x.new_empty((n, d))

    @torch.library.register_fake("fastmotion::project_weak_perspective")
    def _project_fake(points, rotations, scale, offset):
        b, t, j, _ = points.shape
        return points.new_empty((b, rotations.shape[1], t, j, 2))

    @torch.library.register_fake("fastmotion::project_weak_perspective_backward")
    def _project_backward_fake(grad_out, points, rotations, scale):
        return (torch.empty_like(points), torch.empty_like(rotations), torch.empty_like(scale),
                points.new_empty((*scale.shape, 2)))

    @torch.library.register_fake("fastmotion::ray_project")
    def _ray_fake(points, keypoints, K, R, t):
        return torch.empty_like(points)

    @torch.library.register_fake("fastmotion::ray_project_backward")
    def _ray_backward_fake(grad_out, keypoints, K, R):
        return torch.empty_like(grad_out)

    @torch.library.register_fake("fastmotion::reprojection_terms")
    def _terms_fake(points, keypoints, K, R, t, weights, mask, depth_weighted, min_depth, velocity):
        b, frames, j, _ = points.shape
        return points.new_empty((b, frames - 1 if velocity else frames, j)), points.new_empty((), dtype=torch.int64)

    @torch.library.register_fake("fastmotion::reprojection_terms_backward")
    def _terms_backward_fake(grad_terms, points, keypoints, K, R, t, weights, mask, depth_weighted, min_depth,
                             velocity, detach_depth):
        return torch.empty_like(points)

    @torch.library.register_fake("fastmotion::sampson_terms")
    def _sampson_fake(views, F, pairs, mask):
        return views.new_empty((F.shape[0], views.shape[1], views.shape[2]))

    @torch.library.register_fake("fastmotion::sampson_terms_backward")
    def _sampson_backward_fake(grad_terms, views, F, pairs, mask):
        return torch.empty_like(views)
