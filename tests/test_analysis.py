"""transfer/analysis: the CKA estimator against its definitions computed here by brute force, the pairs a
plan yields, the result file, and (slow: real Caffe) the analysis of the trained tiny plan: frozen copied
layers give CKA 1 against their source and do not move."""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from transfer.analysis import cka
from transfer.analysis.pairs import plan_pairs
from transfer.analysis.result import FILE, AnalysisResult, from_json
from transfer.analysis.stats import batch_interval, mean_interval
from transfer.plan.model import LAYERS
from transfer.plan.load import load_plan

import tinyrun  # noqa: E402



# ------------------------------------------------------------------------------ definitions, by brute force

def hsic_u_statistic(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. 2012's HSIC_1 as the U-statistic it is: the mean over all ordered 4-tuples of distinct
    indices of h = 1/4! sum over their orderings (t,u,v,w) of k_tu l_tu + k_tu l_vw - 2 k_tu l_tv."""
    n = len(k)
    total, count = 0.0, 0
    for idx in itertools.permutations(range(n), 4):
        h = sum(k[t, u] * l[t, u] + k[t, u] * l[v, w] - 2 * k[t, u] * l[t, v]
                for t, u, v, w in itertools.permutations(idx))
        total += h / 24
        count += 1
    return total / count


def cka_feature_space(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. 2019's linear CKA from the features: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F),
    columns centred."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def correlated(rng: np.random.Generator, n: int, p: int = 6, q: int = 5, noise: float = 1.0):
    x = rng.normal(size=(n, p)) * np.linspace(2.0, 0.5, p)
    y = x @ rng.normal(size=(p, q)) + noise * rng.normal(size=(n, q))
    return x, y


def orthogonal(rng: np.random.Generator, p: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(p, p)))
    return q * np.sign(np.diag(r))


# ------------------------------------------------------------------------------ the estimator

@pytest.mark.parametrize("n", [6, 7])
def test_unbiased_hsic_is_the_u_statistic(n):
    rng = np.random.default_rng(n)
    x, y = correlated(rng, n)
    k, l = cka.gram(x), cka.gram(y)
    assert cka.hsic1(k, l) == pytest.approx(hsic_u_statistic(k, l), rel=1e-10)
    # and it does not depend on where the features are centred (a U-statistic of differences)
    assert cka.hsic1(cka.gram(x + 3.0), cka.gram(y - 1.5)) == pytest.approx(cka.hsic1(k, l), rel=1e-8)


def test_full_batch_cka_is_kornbliths_formula():
    rng = np.random.default_rng(1)
    x, y = correlated(rng, 40)
    assert cka.cka_full(x, y) == pytest.approx(cka_feature_space(x, y), rel=1e-10)
    # conv-shaped activations are flattened per example
    assert cka.cka_full(x.reshape(40, 2, 3, 1), y) == pytest.approx(cka_feature_space(x, y), rel=1e-10)


def test_cka_of_a_representation_with_itself_is_one():
    rng = np.random.default_rng(2)
    x, _ = correlated(rng, 64)
    assert cka.cka_full(x, x) == pytest.approx(1.0, abs=1e-12)
    assert cka.cka_full(x, x, unbiased=True) == pytest.approx(1.0, abs=1e-12)
    grams = np.stack([cka.gram(b) for b in x.reshape(8, 8, -1)])
    assert cka.minibatch_cka(grams, grams) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("unbiased", [False, True])
def test_invariant_to_orthogonal_maps_and_isotropic_scaling_not_to_other_linear_maps(unbiased):
    rng = np.random.default_rng(3)
    x, y = correlated(rng, 80)
    ref = cka.cka_full(x, y, unbiased)
    q = orthogonal(rng, x.shape[1])
    assert cka.cka_full(x @ q, y, unbiased) == pytest.approx(ref, rel=1e-9)
    assert cka.cka_full(7.5 * x, 0.01 * y, unbiased) == pytest.approx(ref, rel=1e-9)
    assert cka.cka_full(x, 3.0 * x @ q, unbiased) == pytest.approx(1.0, abs=1e-9)
    # an invertible, non-orthogonal map (very unequal singular values) changes it
    a = orthogonal(rng, x.shape[1]) @ np.diag([10.0, 3.0, 1.0, 0.3, 0.1, 0.05]) @ orthogonal(rng, x.shape[1])
    assert abs(cka.cka_full(x @ a, y, unbiased) - ref) > 0.05
    assert cka.cka_full(x, x @ a, unbiased) < 0.95


def test_minibatch_estimate_with_one_batch_of_everything_is_the_full_batch_unbiased_value():
    rng = np.random.default_rng(4)
    x, y = correlated(rng, 50)
    full = cka.cka_full(x, y, unbiased=True)
    assert cka.minibatch_cka(cka.gram(x)[None], cka.gram(y)[None]) == pytest.approx(full, rel=1e-12)


def _batches(x: np.ndarray, b: int) -> np.ndarray:
    return np.stack([cka.gram(c) for c in x.reshape(len(x) // b, b, -1)])


@pytest.mark.slow   # child processes (builds, kills, several commands): the full tier
def test_minibatch_estimate_converges_to_the_full_batch_value():
    """Batches of 16 from one distribution: the error against the full-batch CKA of a large sample falls
    as batches are added, and as batches grow over a fixed set of images."""
    rng = np.random.default_rng(5)
    x, y = correlated(rng, 32768, noise=2.0)
    ref = cka_feature_space(x, y)       # the biased full-batch value; its bias is O(1/n) at this size
    errors = {}
    for k in (4, 64, 2048):
        errs = []
        for rep in range(8):
            sub = rng.choice(len(x), size=16 * k, replace=False)
            errs.append(abs(cka.minibatch_cka(_batches(x[sub], 16), _batches(y[sub], 16)) - ref))
        errors[k] = float(np.mean(errs))
    assert errors[4] > errors[64] > errors[2048]
    assert errors[2048] < 0.01
    # a fixed set of 2048 images in ever larger batches: towards its own full-batch unbiased value
    xs, ys = x[:2048], y[:2048]
    full = cka.cka_full(xs, ys, unbiased=True)
    gaps = [abs(cka.minibatch_cka(_batches(xs, b), _batches(ys, b)) - full) for b in (8, 256, 2048)]
    assert gaps[-1] < 1e-12 and gaps[0] > gaps[-1]


def test_unbiased_minibatch_terms_do_not_drift_with_small_batches_biased_ones_do():
    """Independent representations (population CKA 0): averaging HSIC_1 over batches of 8 stays near 0;
    averaging the biased HSIC over the same batches does not (why the estimator is the unbiased one)."""
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(8 * 2000, 5)), rng.normal(size=(8 * 2000, 4))
    kx, ky = _batches(x, 8), _batches(y, 8)
    assert abs(cka.minibatch_cka(kx, ky)) < 0.02
    biased = [np.mean([cka.hsic0(a, b) for a, b in zip(p, q)]) for p, q in ((kx, ky), (kx, kx), (ky, ky))]
    assert biased[0] / math.sqrt(biased[1] * biased[2]) > 0.2


def test_streaming_accumulator_equals_the_stacked_estimate_and_keeps_per_batch_terms():
    rng = np.random.default_rng(7)
    x, y = correlated(rng, 120)
    acc = cka.MinibatchCKA()
    for xb, yb in zip(x.reshape(6, 20, -1), y.reshape(6, 20, -1)):
        acc.update(xb, yb)
    assert acc.batches == 6 and acc.per_batch().shape == (6, 3)
    assert acc.value == pytest.approx(cka.minibatch_cka(_batches(x, 20), _batches(y, 20)), rel=1e-12)
    with pytest.raises(ValueError):
        acc.update(x[:20], y[:19])


def test_a_layer_without_variance_has_no_cka_and_tiny_batches_are_refused():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(16, 4))
    dead = np.zeros((16, 7))
    assert math.isnan(cka.cka_full(x, dead))
    assert math.isnan(cka.minibatch_cka(_batches(x, 8), _batches(dead, 8)))
    with pytest.raises(ValueError):
        cka.hsic1(np.eye(3), np.eye(3))


def test_intervals():
    rng = np.random.default_rng(9)
    x, y = correlated(rng, 400)
    terms = cka.batch_terms(_batches(x, 20), _batches(y, 20))
    lo, hi = batch_interval(terms, 500, 0)
    assert lo < cka.cka_from_terms(terms) < hi
    assert mean_interval([0.5], 500, 0) is None
    lo, hi = mean_interval([0.2, 0.4, 0.6, float("nan")], 500, 0)
    assert 0.2 <= lo < 0.4 < hi <= 0.6


# ------------------------------------------------------------------------------ pairs from the plan

def test_pairs_come_from_the_plans_fields():
    plan = load_plan("small")
    pairs = plan_pairs(plan)
    base = [p for p in pairs if p.kind == "base-base"]
    assert {(p.net, p.ref) for p in base} == {(f"base-half{s}A", f"base-half{s}B") for s in "012"}
    for p in pairs:
        net, ref = plan.net(p.net), plan.net(p.ref)
        if p.kind == "vs-target":
            assert ref.treatment == "base" and ref.target == net.target
        if p.kind == "vs-source":
            assert ref.name == net.base and net.treatment in ("transfer", "transfer_ft")
        if p.kind == "replicate":   # the same net made on the next split
            assert (net.family, net.treatment, net.n, int(ref.split)) == \
                (ref.family, ref.treatment, ref.n, int(net.split) + 1)
        assert (p.net != p.ref) or p.kind == "init-final"
    # three splits: each net of splits 0 and 1 has its replicate on the next split, nothing else has one
    first = {n.name for n in plan.nets if n.family == "random_split" and n.split in ("0", "1")}
    assert {p.net for p in pairs if p.kind == "replicate"} == first
    # a base at its start vs trained: the references (the B halves, the whole set's base)
    assert {p.net for p in pairs if p.kind == "init-final"} == {f"base-half{s}B" for s in "012"} | {"base-all"}
    assert {(p.net, p.ref) for p in pairs if p.kind == "init-init"} == {(p.net, p.ref) for p in base}


def test_huh_pre_training_bases_are_compared_with_the_base_on_the_original_set():
    plan = load_plan("huh-small")
    huh = [p for p in plan_pairs(plan) if p.kind == "huh-base-all"]
    pre = {n.name for n in plan.nets if n.family == "huh2016" and n.treatment == "base"} - {"base-all"}
    assert {p.net for p in huh} == pre and {(p.ref, p.images) for p in huh} == {("base-all", "base-all")}
    assert not [p for p in plan_pairs(plan) if p.kind == "replicate"]


def test_replicates_are_nets_made_the_same_way_on_another_split(tmp_path):
    config = yaml.safe_load(tinyrun.TINY.read_text())
    config["datasets"].update(half1A=4, half1B=4)
    config["experiments"] = {"random_split": {"splits": [0, 1], "n": [2],
                                              "frozen": {"splits": [0, 1], "directions": ["AB"]}}}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(config))
    plan = load_plan(str(tmp_path / "plan.yaml"))
    reps = {(p.net, p.ref) for p in plan_pairs(plan) if p.kind == "replicate"}
    assert reps == {("base-half0A", "base-half1A"), ("base-half0B", "base-half1B"),
                    ("half0A-2-half0B", "half1A-2-half1B")}


def test_result_file_round_trip_writes_strict_json(tmp_path):
    from transfer.analysis.pairs import Pair
    from transfer.analysis.result import PairResult
    from transfer.analysis.summary import groups
    pair = Pair("base-base", "random_split", "base", "a", "b", "b", None, "0")
    pr = PairResult(pair, {l: (float("nan") if l == "fc8" else 0.5) for l in LAYERS},
                    {l: (0.4, 0.6) for l in LAYERS}, "set")
    settings = {"resamples": 100, "seed": 0, "batch": 10, "images": 100}
    res = AnalysisResult("tiny", "now", settings, list(LAYERS), {}, [pr],
                         groups([pr], list(LAYERS), 100, 0), [])
    res.save(tmp_path)
    data = json.loads((tmp_path / FILE).read_text())
    assert data["pairs"][0]["cka"]["fc8"] is None
    back = from_json(data)
    assert back.pairs[0].pair == pair and back.groups[0].rows[0].layers["conv1"].lo == 0.4
    # the report takes the section from it, and refuses an analysis of another plan
    from transfer.core.errors import TransferError
    from transfer.analysis.section import report_section
    lines, _ = report_section("tiny")(tmp_path)
    assert lines[1].startswith("## Inside the nets") and any("0.50 [0.40, 0.60]" in line for line in lines)
    with pytest.raises(TransferError, match="analysis of plan 'tiny'"):
        report_section("small")(tmp_path)


# ------------------------------------------------------------------------------ real nets (slow)

@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    """The trained tiny plan, analyzed by `transfer analyze` into a report directory of its own."""
    plan, res = tinyrun.trained_plan(tmp_path_factory)
    assert res.returncode == 0, res.stdout + res.stderr
    out = tmp_path_factory.mktemp("analysis")
    run = tinyrun.run_cli("analyze", "--plan", str(plan.path), "--out", str(out), timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return plan, out, json.loads((out / FILE).read_text())


def _cka(data: dict, net: str, ref: str, kind: str) -> dict[str, float]:
    (hit,) = [p for p in data["pairs"] if p["pair"]["net"] == net and p["pair"]["ref"] == ref
              and p["pair"]["kind"] == kind]
    return hit["cka"]


@pytest.mark.requires_caffe
@pytest.mark.parametrize("net, n", [("half0A-2-half0B", 2), ("half0A-6-half0B", 6)])
def test_frozen_copied_layers_have_cka_one_with_their_source_and_do_not_move(analyzed, net, n):
    _, _, data = analyzed
    got = _cka(data, net, "base-half0A", "vs-source")
    assert all(got[l] == pytest.approx(1.0, abs=1e-9) for l in LAYERS[:n])
    assert got[LAYERS[n]] < 0.999     # the first layer trained anew is another representation
    # on the same images, AnB's frozen layers are baseA's: its CKA with baseB equals baseA's there
    base = _cka(data, "base-half0A", "base-half0B", "base-base")
    anb = _cka(data, net, "base-half0B", "vs-target")
    assert all(anb[l] == pytest.approx(base[l], abs=1e-12) for l in LAYERS[:n])
    (mv,) = [m for m in data["movement"] if m["net"] == net]
    assert all(mv["from_init"][l] == 0.0 for l in LAYERS[:n]) and mv["from_init"][LAYERS[n]] > 0
    assert all(mv["init_equals_base"].values())


@pytest.mark.requires_caffe
def test_fine_tuned_copied_layers_move_and_change_their_representation(analyzed):
    _, _, data = analyzed
    (mv,) = [m for m in data["movement"] if m["net"] == "half0A-2-half0B-ft"]
    assert all(mv["from_init"][l] > 0 for l in LAYERS)
    assert mv["from_base"]["conv1"] == pytest.approx(mv["from_init"]["conv1"]) and mv["from_base"]["fc8"] is None
    assert _cka(data, "half0A-2-half0B-ft", "base-half0A", "vs-source")["conv1"] < 1 - 1e-6


def _activations(plan, net_name: str, images, layer: str) -> np.ndarray:
    """A layer's activations on every image of the set, straight from pycaffe (the whole matrix)."""
    from transfer.analysis.activations import deploy, net_definition
    from transfer.analysis.imageset import batches
    from transfer.caffe.env import import_caffe
    caffe = import_caffe()
    caffe.set_mode_cpu()
    net = plan.net(net_name)
    text, transform = deploy(net_definition(net), images.batch, images.shape[0])
    path = Path(net.run.path) / "deploy-test.prototxt"
    path.write_text(text)
    cnet = caffe.Net(str(path), str(net.run.final_weights), caffe.TEST)
    out = []
    for raw in batches(images):
        cnet.blobs["data"].data[...] = transform(raw)
        cnet.forward()
        out.append(cnet.blobs[layer].data.reshape(images.batch, -1).copy())
    return np.concatenate(out)


@pytest.mark.requires_caffe
def test_cached_gram_matrices_give_the_cka_of_the_activations_themselves(analyzed):
    from transfer.analysis.imageset import image_set
    plan, _, data = analyzed
    (info,) = data["image_sets"].values()
    ref = plan.net("base-half0B")
    images = image_set(info["name"], ref.files.val_data, info["count"], info["batch"], info["seed"])
    assert images.digest == info["digest"]
    for layer in ("conv2", "fc7"):
        x = _activations(plan, "base-half0A", images, layer)
        y = _activations(plan, "base-half0B", images, layer)
        acc = cka.MinibatchCKA()   # (the forward passes here use other BLAS threads: float rounding differs)
        for xb, yb in zip(np.split(x, images.batches), np.split(y, images.batches)):
            acc.update(xb, yb)
        assert _cka(data, "base-half0A", "base-half0B", "base-base")[layer] == pytest.approx(acc.value, rel=1e-6)


@pytest.mark.requires_caffe
def test_the_transform_is_the_test_phase_data_layers(analyzed, tmp_path):
    """Our mean subtraction and centre crop give the very floats Caffe's Data layer gives in TEST phase."""
    from transfer.analysis.activations import deploy, net_definition
    from transfer.analysis.imageset import batches, image_set
    plan, _, _ = analyzed
    net = plan.net("half0A-2-half0B")       # reads half0B images, subtracts half0A's mean
    _, transform = deploy(net_definition(net), 10, 3)
    lmdb = Path(net.files.val_data)
    reader = tinyrun.data_net(tmp_path / "read.prototxt", lmdb, 10,
                              f'crop_size: {transform.crop} mean_file: "{transform.mean_file}"')
    (caffe_batch, _), = tinyrun.data_batches(reader)
    # the Data layer reads in database order: our reader given the first ten keys in that order
    drawn = image_set("half0B", lmdb, 10_000, 10, seed=0)
    keys = tuple(sorted(drawn.keys))[:10]
    ordered = dataclasses.replace(drawn, count=10, keys=keys, digest=_digest(lmdb, keys))
    (raw,) = list(batches(ordered))
    assert np.array_equal(transform(raw), caffe_batch)


def _digest(lmdb: Path, keys: tuple[bytes, ...]) -> str:
    import hashlib
    from transfer.data.lmdb_store import open_read
    h = hashlib.sha256()
    with open_read(lmdb) as env, env.begin() as txn:
        for key in keys:
            value = txn.get(key)
            h.update(len(key).to_bytes(4, "little") + key + len(value).to_bytes(8, "little") + value)
    return h.hexdigest()


@pytest.mark.requires_caffe
def test_a_second_run_reads_the_cache_and_the_report_shows_the_section(analyzed, tmp_path):
    plan, out, data = analyzed
    again = tinyrun.run_cli("analyze", "--plan", str(plan.path), "--out", str(tmp_path), "--no-figures")
    assert again.returncode == 0, again.stderr
    second = json.loads((tmp_path / FILE).read_text())
    assert second["seconds"]["forward_runs_computed"] == 0
    assert [p["cka"] for p in second["pairs"]] == [p["cka"] for p in data["pairs"]]
    # a damaged cache file is computed again, to the same numbers
    victim = next(plan.net("base-half0B").run.analysis_dir.glob("grams-final-*.npz"))
    victim.write_bytes(victim.read_bytes()[:200])
    third = tinyrun.run_cli("analyze", "--plan", str(plan.path), "--out", str(tmp_path), "--no-figures")
    assert third.returncode == 0 and json.loads((tmp_path / FILE).read_text())["seconds"]["forward_runs_computed"] == 1
    report = tinyrun.run_cli("report", "--plan", str(plan.path), "--out", str(out))
    assert report.returncode == 0, report.stderr
    md = (out / "report.md").read_text()
    assert "## Inside the nets" in md and "![cka_vs_n](cka_vs_n.png)" in md and "Check passed" in md
    for name in ("cka_random_split.png", "cka_vs_n.png", "movement.png"):
        assert (out / name).stat().st_size > 10_000


@pytest.mark.requires_caffe
def test_bad_input_is_an_error_naming_it(analyzed, tmp_path):
    from transfer.analysis.worker import net_grams
    from transfer.analysis.imageset import image_set
    from transfer.core.errors import TransferError
    from transfer.caffe.gpu import current_build
    plan, _, _ = analyzed
    res = tinyrun.run_cli("analyze", "--plan", str(plan.path), "--out", str(tmp_path), "--batch", "2")
    assert res.returncode == 2 and "argument --batch: must be at least 4, got 2" in res.stderr
    if not current_build().gpu:
        res = tinyrun.run_cli("analyze", "--plan", str(plan.path), "--out", str(tmp_path), "--gpu", "0")
        assert res.returncode == 2 and "CPU-only build" in res.stderr
    net = plan.net("base-half0B")
    damaged = tmp_path / "damaged.caffemodel"
    damaged.write_bytes(net.run.final_weights.read_bytes()[:5000])
    images = image_set("half0B", net.files.val_data, 20, 10)
    with pytest.raises(TransferError, match="damaged.caffemodel"):
        net_grams(net, damaged, images)
    # weights whose fc8 has another shape than the net file's: Caffe aborts, in the child
    from transfer.caffe.caffemodel import learned_layers, read_model
    model = read_model(net.run.final_weights)
    blob = learned_layers(model)["fc8"].blobs[0]
    rows, cols = blob.shape.dim
    del blob.shape.dim[:]
    blob.shape.dim.extend([rows - 1, cols])
    del blob.data[(rows - 1) * cols:]
    wrong = tmp_path / "wrong.caffemodel"
    wrong.write_bytes(model.SerializeToString())
    with pytest.raises(TransferError, match="base-half0B.*wrong.caffemodel.*(killed|exit)"):
        net_grams(net, wrong, images)
