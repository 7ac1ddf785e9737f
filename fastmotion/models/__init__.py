"""Models: residual VQ now; ML-RQ, 2D prior, transformers and MDM in later issues."""
