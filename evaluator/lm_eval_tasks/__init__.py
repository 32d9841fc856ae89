"""Task YAMLs for kind lm_eval that ship with recycle, with their data (see generate.py)."""
