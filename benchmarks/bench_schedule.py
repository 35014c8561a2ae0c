"""Makespan of the paper's 170 nets on K GPUs under the project's scheduling order.

Usage: .venv/bin/python benchmarks/bench_schedule.py [--plan paper] [--sec-per-iter 1.7]
Columns (days): our makespan, the lower bound max(critical path, total work / K), their ratio,
and the best makespan any schedule can reach giving each net one GPU (a proven bound; "=" when
our schedule meets it, i.e. is optimal among one-GPU-a-net schedules).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transfer.plan.load import load_plan  # noqa: E402
from transfer.plan.schedule import SEC_PER_ITER, simulate  # noqa: E402

GPUS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default="paper")
    ap.add_argument("--sec-per-iter", type=float, default=SEC_PER_ITER)
    args = ap.parse_args()
    plan = load_plan(args.plan)
    t0 = time.perf_counter()
    rows = [simulate(plan.name, plan.nets, k, args.sec_per_iter) for k in GPUS]
    took = time.perf_counter() - t0
    r0 = rows[0]
    print(f"plan {plan.name}: {r0['nets']} nets, {args.sec_per_iter} s/iteration; total work "
          f"{r0['total_work_gpu_days']:.1f} GPU-days, critical path {r0['critical_path_days']:.2f} days")
    print(f"| {'GPUs':>4} | {'makespan d':>10} | {'lower bound d':>13} | {'ratio':>5} | "
          f"{'best 1-GPU-a-net d':>18} | {'vs best':>7} |")
    print(f"|{'-' * 6}|{'-' * 12}|{'-' * 15}|{'-' * 7}|{'-' * 20}|{'-' * 9}|")
    for r in rows:
        best = f"{r['one_gpu_bound_days']:.2f}" + (" =" if r["one_gpu_optimal"] else " ≥")
        print(f"| {r['gpus']:>4} | {r['makespan_days']:>10.2f} | {r['lower_bound_days']:>13.2f} | "
              f"{r['ratio']:>5.3f} | {best:>18} | {r['makespan'] / r['one_gpu_bound']:>7.3f} |")
    print(f"({len(rows)} simulations in {took:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
