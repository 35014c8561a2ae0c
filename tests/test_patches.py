"""The Caffe patch series (caffe/patches, applied by caffe/apply_patches.py) on the real pinned sdist,
without compiling: what it changes, that a second run and a hunk that no longer fits are refused with
the patch and hunk named, and that a foreign tree gets each patch whole or not at all."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from transfer import REPO

import tinyrun  # noqa: E402
from tinyrun import apply_patches  # noqa: E402

# What the series changes in the sdist, and the files of ours it installs (caffe/<name>).
CHANGED = {
    "python/caffe/io.py", "python/caffe/net_spec.py", "python/caffe/pycaffe.py", "tools/caffe.cpp",
    "src/caffe/common.cpp", "src/caffe/layers/proposal_layer.cu",
    *(f"src/caffe/layers/{s}_layer.cpp" for s in ("relu6", "hardswish", "hardsigmoid", "pixelshuffle",
                                                  "maxunpool", "upsample")),
    "src/caffe/proto/caffe.proto", "include/caffe/data_reader.hpp", "src/caffe/data_reader.cpp",
    "include/caffe/layers/data_layer.hpp", "src/caffe/layers/data_layer.cpp",
    "include/caffe/layers/base_data_layer.hpp", "src/caffe/layers/base_data_layer.cpp",
    "src/caffe/layers/base_data_layer.cu", "include/caffe/util/cudnn.hpp",
    "include/caffe/layers/cudnn_conv_layer.hpp", "src/caffe/layers/cudnn_conv_layer.cpp",
    "src/caffe/layers/cudnn_conv_layer.cu", "src/caffe/layers/pooling_layer.cpp", "src/caffe/layers/pooling_layer.cu",
}
INSTALLED = {"include/caffe/util/keyed_transform.hpp": "keyed_transform.hpp",
             "src/caffe/util/keyed_transform.cpp": "keyed_transform.cpp",
             "include/caffe/layers/cudnn_conv_layer.hpp": "cudnn_conv_layer.hpp",
             "src/caffe/layers/cudnn_conv_layer.cpp": "cudnn_conv_layer.cpp",
             "src/caffe/layers/cudnn_conv_layer.cu": "cudnn_conv_layer.cu"}


def contents(tree: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tree)): p.read_bytes() for p in tree.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> tuple[Path, Path, list[dict]]:
    return tinyrun.patched_sdist(tmp_path_factory.mktemp("series"))


def test_series_applies_to_the_sdist_and_changes_exactly_the_expected_files(trees):
    sdist, tree, records = trees
    series = sorted((REPO / "caffe" / "patches").glob("*.patch"))
    assert [r["name"] for r in records] == [p.name for p in series] and all(r["applied"] for r in records)
    for r, path in zip(records, series):
        assert r["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    before, after = contents(sdist), contents(tree)
    assert set(before) - set(after) == set()                                 # nothing removed
    assert set(after) - set(before) == set(INSTALLED) - set(before)         # only our new files added
    assert {f for f in before if before[f] != after[f]} == CHANGED
    for dest, ours in INSTALLED.items():                                    # installed byte for byte
        assert after[dest] == (REPO / "caffe" / ours).read_bytes(), dest
    # a few of the edits, where they belong
    proposal = after["src/caffe/layers/proposal_layer.cu"].decode()
    assert proposal.count("ProposalLayer<Dtype>::Backward_gpu(") == 1
    assert proposal.index("ProposalLayer<Dtype>::Backward_gpu(") < proposal.index(
        "INSTANTIATE_LAYER_GPU_FUNCS(ProposalLayer)")
    relu6 = after["src/caffe/layers/relu6_layer.cpp"].decode()
    assert "STUB_GPU(ReLU6Layer);\n" in relu6 and "Backward_cpu(top, propagate_down, bottom);" in relu6
    layer = after["src/caffe/layers/data_layer.cpp"].decode()
    assert layer.count("keyed_->Batch(items, images_done_, top_data, transform_threads_);") == 1
    assert "data_transformer_->Transform(datum" not in layer                 # the sequential loop is gone
    proto = after["src/caffe/proto/caffe.proto"].decode()
    assert "optional string label_map_file = 11;" in proto and "optional uint32 transform_threads = 13" in proto


def test_applying_the_series_twice_is_refused_and_writes_nothing(trees, tmp_path):
    _, patched, _ = trees
    tree = tmp_path / "tree"
    shutil.copytree(patched, tree, symlinks=True)
    before = contents(tree)
    with pytest.raises(apply_patches.PatchError) as err:
        apply_patches.run(tree, foreign=False)
    first = sorted((REPO / "caffe" / "patches").glob("*.patch"))[0].name
    assert f"caffe/patches/{first} does not apply: hunk 1 of " in str(err.value)
    assert "already there (the series was applied before)" in str(err.value)
    assert contents(tree) == before


def hunk_of(patch_name: str, path: str, number: int) -> apply_patches.Hunk:
    (patch,) = [apply_patches.parse_patch(p) for p in (REPO / "caffe" / "patches").glob(patch_name)]
    (diff,) = [f for f in patch.files if f.path == path]
    return diff.hunks[number - 1]


def break_hunk(tree: Path, path: str, hunk: apply_patches.Hunk) -> None:
    """Edit one line of `tree`/`path` that `hunk` expects (one found nowhere else in the file), so that
    this hunk, and only this one, no longer matches."""
    target = tree / path
    text = target.read_bytes()
    line = next(line for line in hunk.old if line.strip() and text.count(line) == 1)
    target.write_bytes(text.replace(line, line.rstrip(b"\n") + b" /* edited */\n"))


def test_a_hunk_that_no_longer_applies_is_an_error_naming_the_patch_and_hunk(trees, tmp_path):
    sdist, _, _ = trees
    tree = tmp_path / "tree"
    shutil.copytree(sdist, tree, symlinks=True)
    hunk = hunk_of("0007-*.patch", "src/caffe/data_reader.cpp", 3)
    break_hunk(tree, "src/caffe/data_reader.cpp", hunk)
    before = contents(tree)
    with pytest.raises(apply_patches.PatchError) as err:
        apply_patches.run(tree, foreign=False)
    message = str(err.value)
    assert message.startswith("caffe/patches/0007-data-layer-view.patch does not apply: ")
    assert f"hunk 3 of src/caffe/data_reader.cpp ({hunk.header}, at line " in message
    assert "/* edited */" in message                                          # the line that differs
    assert contents(tree) == before                                          # no patch half-applied


def test_a_patch_that_no_longer_applies_stops_the_build_before_cmake(trees, tmp_path):
    """Through scripts/build-caffe.sh: the sdist copy, edited so that one hunk of a patch every tree
    needs no longer fits, given as CAFFE_SRC (the build takes the sdist itself only from its
    sha256-checked tarball). The build stops at the patch step, naming the patch and the hunk."""
    sdist, _, _ = trees
    tree = tmp_path / "edited-sdist"
    shutil.copytree(sdist, tree, symlinks=True)
    hunk = hunk_of("0013-*.patch", "src/caffe/layers/pooling_layer.cpp", 2)
    break_hunk(tree, "src/caffe/layers/pooling_layer.cpp", hunk)
    cache = tmp_path / "cache"
    env = {**os.environ, "VENV": sys.prefix, "PY": sys.executable, "CAFFE_SRC": str(tree), "CAFFE_GPU": "0",
           "TRANSFER_CACHE": str(cache), "CAFFE_RECORD": "0"}
    proc = subprocess.run([str(REPO / "scripts" / "build-caffe.sh")], capture_output=True, text=True, env=env,
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert ("caffe/patches/0013-max-pooling-mask-inside-the-input.patch does not apply: hunk 2 of "
            f"src/caffe/layers/pooling_layer.cpp ({hunk.header}, at line ") in out, out
    assert "(required in any tree)" in out and "nothing was compiled" in out
    assert "configuring (cmake)" not in out                                  # it stopped before cmake
    (partial,) = (cache / "caffe").glob("*.partial")
    assert not (partial / ".cmake" / "CMakeCache.txt").exists()
    assert not (cache / "caffe" / partial.name.replace(".partial", "")).exists()   # nothing looks built


def test_a_foreign_tree_gets_each_patch_whole_or_not_at_all(trees, tmp_path):
    sdist, patched, _ = trees
    tree = tmp_path / "tree"       # a tree without brocolli's DataReader, as BVLC master
    shutil.copytree(sdist, tree, symlinks=True)
    (tree / "include/caffe/data_reader.hpp").unlink()
    records = {r["name"].split("-")[0]: r for r in apply_patches.run(tree, foreign=True)}
    assert not records["0007"]["applied"] and "include/caffe/data_reader.hpp: no such file" in records[
        "0007"]["reason"]
    assert not records["0008"]["applied"]       # its proto hunk needs 0007's fields
    assert [n for n, r in records.items() if not r["applied"]] == ["0007", "0008"]
    # caffe.proto would have taken 0007's hunk: not applied means none of it (the old patcher added the
    # view's fields to a tree whose reader ignored them)
    assert (tree / "src/caffe/proto/caffe.proto").read_bytes() == (sdist / "src/caffe/proto/caffe.proto").read_bytes()
    assert not (tree / "src/caffe/util/keyed_transform.cpp").exists()
    for rel in ("tools/caffe.cpp", "include/caffe/layers/base_data_layer.hpp", "src/caffe/common.cpp"):
        assert (tree / rel).read_bytes() == (patched / rel).read_bytes(), rel


def test_a_malformed_series_is_refused(tmp_path):
    good = sorted((REPO / "caffe" / "patches").glob("*.patch"))[0]
    series = tmp_path / "series"
    series.mkdir()
    shutil.copy(good, series / "0002-gap.patch")
    with pytest.raises(apply_patches.PatchError, match="numbered 0001, 0002"):
        apply_patches.load_series(series)
    (series / "0002-gap.patch").rename(series / "0001-x.patch")
    (series / "0001-x.patch").write_text(good.read_text().replace("Foreign-tree: ", "Foreign-tree: maybe, "))
    with pytest.raises(apply_patches.PatchError, match=r"0001-x.patch:\d+: Foreign-tree must be"):
        apply_patches.load_series(series)
