"""Training losses (Free3D's 3D-free regularisers; VideoMDM's follow)."""
