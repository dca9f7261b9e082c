"""Inference engines with no Ray imports: each heavy runtime behind its own adapter module."""
