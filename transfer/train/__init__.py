"""Training: weight surgery, preflight checks, one net's `caffe train` (resumable), the local runner,
SLURM jobs and status. Imports core, caffe, plan and data.
"""
