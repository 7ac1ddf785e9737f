"""Models: residual VQ, the ML-RQ and 2D prior (Free3D), the text-to-motion transformers, MDM (VideoMDM), MVLift's
line-conditioned (stage 1) and multi-view (stage 4) denoisers, and the text encoders."""
