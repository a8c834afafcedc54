"""The config groups, shipped with the package (Hydra loads them as pkg://platypus.conf; the checkout's conf/ links
here)."""
