"""Results: which nets count (DONE only), the per-net metric, the papers' figures and tables as typed
objects with 95% intervals over replicates, the verdicts, beside the published numbers (`transfer report`).
Imports every stage below it, never training code.
"""
