"""Training loops and their click commands (installed as fastmotion.train). The shared loop lands with the
ML-RQ issue; this package exists now so the install layout is final."""
