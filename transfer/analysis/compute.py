"""The whole analysis of a plan's finished nets: image sets, cached Gram matrices, the CKA of every
pair layer by layer, groups with intervals, and weight movement. Returns an AnalysisResult."""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..console import stage
from ..errors import TransferError
from ..gpu import require_gpu_build
from ..plan import LAYERS, Net, Plan
from . import activations, movement, summary
from .activations import Grams, net_grams
from .cka import batch_terms, cka_from_terms
from .imageset import ImageSet, image_set
from .pairs import Pair, plan_pairs
from .result import AnalysisResult, PairResult
from .stats import batch_interval

log = stage("analyze")
DEFAULT_IMAGES = 10000   # as Nguyen, Raghu and Kornblith 2021 (10,000 test images)


@dataclass(frozen=True)
class Settings:
    images: int = DEFAULT_IMAGES   # at most this many validation images per image set
    batch: int | None = None       # images a minibatch; None: the plan's test batch
    seed: int = 0                  # draws the images and seeds the bootstraps
    resamples: int = 1000
    gpu: int | None = None         # None: CPU


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


def jobs(plan: Plan, pairs: list[Pair], sets: dict[str, ImageSet]) -> list[tuple[Net, str, ImageSet]]:
    """(net, weights, image set) of every forward run the pairs need, each once."""
    seen: dict[tuple[str, str, str], tuple[Net, str, ImageSet]] = {}
    for p in pairs:
        imgs = sets[p.images]
        for name, which in ((p.net, p.net_weights), (p.ref, p.ref_weights)):
            seen.setdefault((name, which, imgs.key), (plan.net(name), which, imgs))
    return list(seen.values())


class GramStore:
    """Gram matrices from the on-disk cache, the last few kept in memory (a reference net serves many pairs)."""

    def __init__(self, gpu: int | None, keep: int = 4) -> None:
        self.gpu, self.keep = gpu, keep
        self.cache: OrderedDict[tuple[str, str, str], Grams] = OrderedDict()

    def get(self, net: Net, which: str, imgs: ImageSet) -> Grams:
        key = (net.name, which, imgs.key)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        grams = net_grams(net, weights_of(net, which), imgs, LAYERS, self.gpu)
        self.cache[key] = grams
        while len(self.cache) > self.keep:
            self.cache.popitem(last=False)
        return grams


def compare(pair: Pair, a: Grams, b: Grams, imgs: ImageSet, s: Settings) -> PairResult:
    cka, ci = {}, {}
    for i, layer in enumerate(LAYERS):
        terms = batch_terms(a.layers[layer], b.layers[layer])
        cka[layer] = cka_from_terms(terms)
        ci[layer] = batch_interval(terms, s.resamples, s.seed + i)
    return PairResult(pair=pair, cka=cka, ci_images=ci, image_set=imgs.key)


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
    store, forward, computed = GramStore(s.gpu), 0.0, 0
    for k, (net, which, imgs) in enumerate(todo, 1):
        grams = net_grams(net, weights_of(net, which), imgs, LAYERS, s.gpu)
        if grams.meta.get("fresh"):
            computed += 1
            forward += grams.meta["seconds"]["forward"]
            log.info("%d/%d %s (%s weights) on %s: %.1f s", k, len(todo), net.name, which, imgs.key,
                     grams.meta["seconds"]["total"])
    log.info("%d forward runs computed, %d read from the cache", computed, len(todo) - computed)
    t_grams = time.monotonic() - t0
    results = []
    for p in pairs:
        imgs = sets[p.images]
        results.append(compare(p, store.get(plan.net(p.net), p.net_weights, imgs),
                               store.get(plan.net(p.ref), p.ref_weights, imgs), imgs, s))
    t_pairs = time.monotonic() - t0 - t_grams
    moved, why = movements(plan)
    missing.update(why)
    total = time.monotonic() - t0
    return AnalysisResult(
        plan=plan.name, generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        settings={"images": s.images, "batch": s.batch or plan.model.test_batch, "seed": s.seed,
                  "resamples": s.resamples, "device": "CPU" if s.gpu is None else f"GPU {s.gpu}",
                  "representation": activations.REPRESENTATION, "estimator": "linear CKA, unbiased minibatch HSIC_1"},
        layers=list(LAYERS), image_sets={i.key: i.to_json() for i in sets.values()}, pairs=results,
        groups=summary.groups(results, LAYERS, s.resamples, s.seed), movement=moved, missing=missing,
        seconds={"total": round(total, 2), "activations": round(t_grams, 2), "pairs": round(t_pairs, 2),
                 "movement": round(total - t_grams - t_pairs, 2), "forward_runs_computed": computed,
                 "forward_runs": len(todo), "forward_seconds_computed": round(forward, 2)})
