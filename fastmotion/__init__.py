"""fastmotion: train 3D human-motion generators from 2D keypoints alone."""
__version__ = "0.1.0"
