"""The whole analysis of a plan's finished nets: image sets, cached Gram matrices, the CKA of every
pair layer by layer, groups with intervals, and weight movement. Returns an AnalysisResult."""
from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..core.console import stage
from ..core.errors import TransferError
from ..caffe.gpu import require_gpu_build
from ..plan.model import LAYERS, Net, Plan
from . import activations, movement, summary
from .activations import Grams, Job, job, load_cached, read_meta
from .cka import batch_terms, cka_from_terms
from .imageset import ImageSet, image_set
from .pairs import Pair, plan_pairs
from .result import AnalysisResult, PairResult
from .stats import batch_interval
from .worker import Options, run_jobs

log = stage("analyze")
DEFAULT_IMAGES = 10000   # as Nguyen, Raghu and Kornblith 2021 (10,000 test images)


@dataclass(frozen=True)
class Settings:
    images: int = DEFAULT_IMAGES   # at most this many validation images per image set
    batch: int | None = None       # images a minibatch; None: the plan's test batch
    seed: int = 0                  # draws the images and seeds the bootstraps
    resamples: int = 1000
    gpu: int | None = None         # None: CPU
    jobs: int | None = None        # nets run at once (child processes); None: every core (CPU), 4 (GPU)
    threads: int | None = None     # BLAS threads a child; None: the cores shared between the jobs

    def options(self) -> Options:
        """Children share the cores: many BLAS threads on busy cores wait on each other (threads.py)."""
        cores = os.cpu_count() or 1
        jobs = self.jobs or (cores if self.gpu is None else min(4, cores))
        return Options(parallel=jobs, gpu=self.gpu, threads=self.threads or max(1, cores // jobs))


def weights_of(net: Net, which: str) -> Path:
    return net.run.init_weights if which == "init" else net.run.final_weights


def ready(plan: Plan, pairs: list[Pair]) -> tuple[list[Pair], dict[str, str]]:
    """The pairs whose nets are finished (and whose init weights exist where asked), and why each
    other one is left out."""
    ok, missing = [], {}
    for p in pairs:
        net, ref = plan.net(p.net), plan.net(p.ref)
        why = next((f"{m.name} is not finished" for m in (net, ref) if not m.run.is_done()), None)
        for m, which in ((net, p.net_weights), (ref, p.ref_weights)):
            if why is None and not weights_of(m, which).is_file():
                why = f"{m.name} has no {which} weights ({weights_of(m, which).name})"
        if why:
            missing[f"{p.net} ({p.net_weights}) vs {p.ref} ({p.ref_weights})"] = why
        else:
            ok.append(p)
    return ok, missing


def image_sets(plan: Plan, pairs: list[Pair], s: Settings) -> dict[str, ImageSet]:
    """The image set of each pair's `images` net (nets validated on one LMDB share one)."""
    by_db: dict[str, ImageSet] = {}
    out = {}
    batch = s.batch or plan.model.test_batch
    for name in dict.fromkeys(p.images for p in pairs):
        net = plan.net(name)
        db = str(net.files.val_data)
        if db not in by_db:
            by_db[db] = image_set(net.val_dataset, net.files.val_data, s.images, batch, s.seed)
        out[name] = by_db[db]
    return out


def jobs(plan: Plan, pairs: list[Pair], sets: dict[str, ImageSet]) -> dict[tuple[str, str, str], Job]:
    """Every forward run the pairs need, each once, by (net, weights, image set)."""
    out: dict[tuple[str, str, str], Job] = {}
    for p in pairs:
        imgs = sets[p.images]
        for name, which in ((p.net, p.net_weights), (p.ref, p.ref_weights)):
            if (name, which, imgs.key) not in out:
                net = plan.net(name)
                out[(name, which, imgs.key)] = job(net, weights_of(net, which), imgs, LAYERS)
    return out


class GramStore:
    """Gram matrices read back from the cache, the last few kept in memory (a reference net serves
    many pairs)."""

    def __init__(self, todo: dict[tuple[str, str, str], Job], keep: int = 4) -> None:
        self.todo, self.keep = todo, keep
        self.cache: OrderedDict[tuple[str, str, str], Grams] = OrderedDict()

    def get(self, net: str, which: str, imgs: ImageSet) -> Grams:
        key = (net, which, imgs.key)
        if key not in self.cache:
            j = self.todo[key]
            grams = load_cached(j.path, j.identity)
            if grams is None:
                raise TransferError(f"net '{net}': {j.path} cannot be read back; run `transfer analyze` again")
            self.cache[key] = grams
            while len(self.cache) > self.keep:
                self.cache.popitem(last=False)
        self.cache.move_to_end(key)
        return self.cache[key]


def compare(pair: Pair, a: Grams, b: Grams, imgs: ImageSet, s: Settings) -> PairResult:
    cka, ci = {}, {}
    for i, layer in enumerate(LAYERS):
        terms = batch_terms(a.layers[layer], b.layers[layer])
        cka[layer] = cka_from_terms(terms)
        ci[layer] = batch_interval(terms, s.resamples, s.seed + i)
    return PairResult(pair=pair, cka=cka, ci_images=ci, image_set=imgs.key)


def compare_all(pairs: list[Pair], sets: dict[str, ImageSet], todo: dict[tuple[str, str, str], Job],
                s: Settings) -> list[PairResult]:
    store = GramStore(todo)
    return [compare(p, store.get(p.net, p.net_weights, sets[p.images]),
                    store.get(p.ref, p.ref_weights, sets[p.images]), sets[p.images], s) for p in pairs]


def movements(plan: Plan) -> tuple[list[movement.Movement], dict[str, str]]:
    """Weight movement of every finished net that copies layers from a finished base."""
    out, missing = [], {}
    for net in plan.nets:
        base = plan.base_of(net)
        if base is None:
            continue
        if not (net.run.is_done() and base.run.is_done()):
            missing[f"movement of {net.name}"] = f"{net.name if not net.run.is_done() else base.name} is not finished"
            continue
        out.append(movement.movement(plan, net))
    return out, missing


def run(plan: Plan, s: Settings = Settings()) -> AnalysisResult:
    """Analyze every pair of the plan whose nets are finished (the rest listed in `missing`)."""
    t0 = time.monotonic()
    if s.gpu is not None:
        require_gpu_build()   # a CPU-only Caffe: said before any net runs, with how to build the CUDA one
    pairs, missing = ready(plan, plan_pairs(plan))
    if not pairs:
        raise TransferError(f"plan '{plan.name}': no pair of nets to compare is finished "
                            f"({len(missing)} waiting; `transfer status --plan {plan.name}`)")
    sets = image_sets(plan, pairs, s)
    todo = jobs(plan, pairs, sets)
    log.info("%d pairs of nets, %d image set(s), %d forward runs (cached ones are read back)",
             len(pairs), len({i.key for i in sets.values()}), len(todo))
    computed: list[Job] = []

    def done(j: Job) -> None:
        computed.append(j)
        log.info("%d forward runs computed: %s on %s", len(computed), j.net.name, j.images.key)

    run_jobs(list(todo.values()), s.options(), done)
    log.info("%d forward runs computed, %d read from the cache", len(computed), len(todo) - len(computed))
    t_grams = time.monotonic() - t0
    results = compare_all(pairs, sets, todo, s)
    t_pairs = time.monotonic() - t0 - t_grams
    forward = sum(read_meta(j.path)["seconds"]["forward"] for j in computed)
    moved, why = movements(plan)
    missing.update(why)
    total = time.monotonic() - t0
    return AnalysisResult(
        plan=plan.name, generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        settings={"images": s.images, "batch": s.batch or plan.model.test_batch, "seed": s.seed,
                  "resamples": s.resamples, "device": "CPU" if s.gpu is None else f"GPU {s.gpu}",
                  "jobs": s.options().parallel, "threads": s.options().threads,
                  "representation": activations.REPRESENTATION, "estimator": "linear CKA, unbiased minibatch HSIC_1"},
        layers=list(LAYERS), image_sets={i.key: i.to_json() for i in sets.values()}, pairs=results,
        groups=summary.groups(results, LAYERS, s.resamples, s.seed), movement=moved, missing=missing,
        seconds={"total": round(total, 2), "activations": round(t_grams, 2), "pairs": round(t_pairs, 2),
                 "movement": round(total - t_grams - t_pairs, 2), "forward_runs_computed": len(computed),
                 "forward_runs": len(todo), "forward_seconds_computed": round(forward, 2)})
