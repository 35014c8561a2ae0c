"""Results: the per-net metric, the papers' figures and tables with intervals and verdicts, beside
the published numbers (`transfer report`). Imports every stage below it, never training code.
"""
