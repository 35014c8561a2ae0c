"""transfer data build / derive / verify / mean on real JPEG files made here with Pillow."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transfer.data.build import build
from transfer.data.derive import derive
from transfer.data.means import compute_mean, read_mean
from transfer.data.verify import verify
from transfer.core.errors import TransferError
from transfer.data.lmdb_store import PROGRESS_KEY, iter_items, open_read, read_manifest

cv2 = pytest.importorskip("cv2")
SIZE = 24
REPO = Path(__file__).resolve().parents[1]


def _textured(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colour gradients plus noise: JPEG-realistic, and warping changes it visibly."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w)], -1)
    return np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


def _corpus(root: Path, n: int, labels: int = 4, seed: int = 0) -> list[str]:
    """n JPEGs of varied sizes in two class directories; list lines 'dir/file.JPEG label'."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        d = root / f"n{i % 2:02d}"
        d.mkdir(parents=True, exist_ok=True)
        h, w = int(rng.integers(30, 60)), int(rng.integers(30, 60))
        Image.fromarray(_textured(rng, h, w)).save(d / f"img_{i:03d}.JPEG", quality=90)
        lines.append(f"n{i % 2:02d}/img_{i:03d}.JPEG {i % labels}")
    return lines


def _write_list(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _items(db: Path) -> list[tuple[bytes, bytes]]:
    with open_read(db) as env:
        return [(k, bytes(v)) for k, v in iter_items(env)]


def _expected(path: Path, size: int = SIZE) -> np.ndarray:
    """convert_imageset's pixels: cv::imread colour, cv::resize INTER_LINEAR, channel-major."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    return cv2.resize(img, (size, size)).transpose(2, 0, 1)


@pytest.fixture()
def corpus(tmp_path):
    root = tmp_path / "images"
    lines = _corpus(root, 30)
    return root, _write_list(tmp_path / "files.txt", lines), lines


def test_build_stores_convert_imageset_datums(pb2, corpus, tmp_path):
    root, lst, lines = corpus
    db = build(str(lst), str(root), str(tmp_path / "db"), size=SIZE, jobs=2, block=7)
    items = _items(db)
    assert [k for k, _ in items] == [f"{i:08d}_{ln.split()[0]}".encode() for i, ln in enumerate(lines)]
    for (key, value), line in zip(items, lines):
        path, label = line.split()
        want = _expected(root / path)
        # byte-identical to what CVMatToDatum + SerializeToString produce, encoded=false included
        ref = pb2.Datum(channels=3, height=SIZE, width=SIZE, data=want.tobytes(), label=int(label), encoded=False)
        assert value == ref.SerializeToString()
    assert not Path(str(db) + ".partial").exists()
    assert verify(str(db)) == []


def test_odd_images_decode_right(pb2, tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "odd"
    root.mkdir()
    rgb = _textured(rng, 40, 50)
    Image.fromarray(rgb).convert("L").save(root / "gray.JPEG", quality=95)
    Image.fromarray(rgb).convert("CMYK").save(root / "cmyk.JPEG", quality=95)
    Image.fromarray(rgb).save(root / "png.JPEG", format="PNG")  # as ILSVRC's n02105855_2933.JPEG
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees on display
    Image.fromarray(rgb).save(root / "exif.JPEG", quality=95, exif=exif)
    lst = _write_list(tmp_path / "odd.txt", ["gray.JPEG 0", "cmyk.JPEG 1", "png.JPEG 2", "exif.JPEG 3"])
    db = build(str(lst), str(root), str(tmp_path / "db"), size=SIZE, jobs=1)
    got = [np.frombuffer(pb2.Datum.FromString(v).data, np.uint8).reshape(3, SIZE, SIZE) for _, v in _items(db)]
    gray, cmyk, png, rotated = got
    assert (gray[0] == gray[1]).all() and (gray[1] == gray[2]).all()  # grey replicated to BGR
    with Image.open(root / "cmyk.JPEG") as im:
        assert im.mode == "CMYK"
        pil_bgr = np.asarray(im.convert("RGB"))[:, :, ::-1]
    # OpenCV's CMYK conversion against Pillow's, then both warped the same way
    pil = cv2.resize(np.ascontiguousarray(pil_bgr), (SIZE, SIZE)).transpose(2, 0, 1)
    assert np.abs(cmyk.astype(int) - pil).max() <= 2
    assert np.array_equal(png, cv2.resize(np.ascontiguousarray(rgb[:, :, ::-1]), (SIZE, SIZE)).transpose(2, 0, 1))
    # EXIF orientation ignored, as the 2014 convert_imageset (OpenCV 2.4) did: the stored pixels
    # are the file's, not the rotated picture today's cv2.imread would give by default.
    as_stored = cv2.imread(str(root / "exif.JPEG"), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert as_stored.shape[:2] == (40, 50) and cv2.imread(str(root / "exif.JPEG")).shape[:2] == (50, 40)
    assert np.array_equal(rotated, cv2.resize(as_stored, (SIZE, SIZE)).transpose(2, 0, 1))


@pytest.mark.parametrize("bad", ["truncated", "missing", "garbage"])
def test_bad_image_stops_build_with_path_and_line(pb2, corpus, tmp_path, bad):
    root, _, lines = corpus
    target = root / lines[17].split()[0]
    if bad == "truncated":
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])
    elif bad == "missing":
        target.unlink()
    else:
        target.write_bytes(b"not an image at all" * 10)
    lst = _write_list(tmp_path / "files.txt", lines)
    with pytest.raises(TransferError) as err:
        build(str(lst), str(root), str(tmp_path / "db"), size=SIZE, jobs=2, block=5)
    msg = str(err.value)
    assert f"{lst}:18:" in msg and str(target) in msg
    assert {"truncated": "truncated", "missing": "not found", "garbage": "not a decodable"}[bad] in msg
    assert not (tmp_path / "db").exists()  # nothing that looks finished


def test_skip_bad_writes_report(pb2, corpus, tmp_path):
    root, _, lines = corpus
    (root / lines[3].split()[0]).unlink()
    t = root / lines[20].split()[0]
    t.write_bytes(t.read_bytes()[:300])
    lst = _write_list(tmp_path / "files.txt", lines + ["n00/nowhere.JPEG 1"])
    db = build(str(lst), str(root), str(tmp_path / "db"), size=SIZE, jobs=2, block=4, skip_bad=True)
    report = (tmp_path / "db.skipped.tsv").read_text().splitlines()
    assert report[0] == "line\tpath\treason"
    assert [r.split("\t")[:2] for r in report[1:]] == [
        ["4", lines[3].split()[0]], ["21", lines[20].split()[0]], ["31", "n00/nowhere.JPEG"]]
    m = read_manifest(db)
    assert m["count"] == 28 and m["skipped"] == 3 and m["skipped_report"] == "db.skipped.tsv"
    keys = [k for k, _ in _items(db)]
    assert keys[3].startswith(b"00000004_")  # skipped positions leave gaps, as convert_imageset
    assert verify(str(db)) == []


# A child process running datasets.build that SIGKILLs itself after a number of Datum puts: a crash
# in the middle of a commit's transaction. Its LMDB environment is wrapped in the child only.
_KILLER = """
import ast, os, signal, sys
import lmdb
from transfer.data import lmdb_store
from transfer.data.build import build

left = int(sys.argv[1])


class Txn:
    def __init__(self, txn):
        self.txn = txn

    def __enter__(self):
        self.txn.__enter__()
        return self

    def __exit__(self, *exc):
        return self.txn.__exit__(*exc)

    def put(self, key, value, **kw):
        global left
        done = self.txn.put(key, value, **kw)
        if key != lmdb_store.PROGRESS_KEY:
            left -= 1
            if left == 0:
                os.kill(os.getpid(), signal.SIGKILL)
        return done

    def __getattr__(self, name):
        return getattr(self.txn, name)


class Env:
    def __init__(self, env):
        self.env = env

    def begin(self, write=False, **kw):
        txn = self.env.begin(write=write, **kw)
        return Txn(txn) if write else txn

    def __getattr__(self, name):
        return getattr(self.env, name)


real_open = lmdb.open
lmdb.open = lambda *a, **kw: Env(real_open(*a, **kw))
build(*sys.argv[2:5], **ast.literal_eval(sys.argv[5]))
"""


def _killed_build(lst: Path, root: Path, out: Path, kill_after: int, **opts) -> subprocess.CompletedProcess:
    """datasets.build in a child process killed (SIGKILL) after `kill_after` puts, mid-transaction."""
    args = [str(kill_after), str(lst), str(root), str(out), repr({"size": SIZE, **opts})]
    return subprocess.run([sys.executable, "-c", _KILLER, *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def _cli(capsys, *args: str) -> tuple[int, str]:
    """The real command line, in process (exit code, stderr)."""
    from transfer import cli

    capsys.readouterr()
    code = cli.main(list(args))
    return code, capsys.readouterr().err


def test_resume_after_kill_equals_uninterrupted(pb2, corpus, tmp_path, capsys):
    root, lst, _ = corpus
    out = tmp_path / "db"
    opts = {"shuffle": True, "seed": 3, "block": 4, "jobs": 2}
    killed = _killed_build(lst, root, out, 14, **opts)  # SIGKILL in the middle of the 4th commit
    assert killed.returncode == -signal.SIGKILL
    partial = tmp_path / "db.partial"
    assert partial.is_dir() and not out.exists()
    with open_read(partial) as env:
        keys = [k for k, _ in iter_items(env, keys_only=True)]
    assert keys[0] == PROGRESS_KEY and len(keys) - 1 == 12  # three commits of 4 survived, the 4th did not

    args = ["data", "build", "--list", str(lst), "--root", str(root), "--size", str(SIZE), "--out", str(out),
            "--shuffle", "--commit-every", "4", "--jobs", "2"]
    code, err = _cli(capsys, *args, "--seed", "4")  # another seed: refused, partial kept
    assert code == 2 and "unfinished build of something else" in err and "seed: was 3, now 4" in err
    code, err = _cli(capsys, *args, "--seed", "3")
    assert code == 0 and "resuming" in err and "at 12/30" in err and not partial.exists()

    ref = build(str(lst), str(root), str(tmp_path / "ref"), size=SIZE, **opts)
    assert _items(out) == _items(ref)
    assert read_manifest(out)["labels"] == read_manifest(ref)["labels"]
    assert _cli(capsys, "data", "verify", str(out))[0] == 0
    assert (out / "data.mdb").stat().st_size == (ref / "data.mdb").stat().st_size  # sparse map tail trimmed


def test_shuffle_is_seeded_permutation(pb2, corpus, tmp_path):
    root, lst, lines = corpus
    a = build(str(lst), str(root), str(tmp_path / "a"), size=SIZE, shuffle=True, seed=7, jobs=2)
    b = build(str(lst), str(root), str(tmp_path / "b"), size=SIZE, shuffle=True, seed=7, jobs=1)
    assert _items(a) == _items(b)
    paths = [k[9:].decode() for k, _ in _items(a)]
    assert sorted(paths) == sorted(ln.split()[0] for ln in lines) and paths != [ln.split()[0] for ln in lines]


@pytest.mark.parametrize("shuffle", [False, True])
def test_derive_equals_direct_build(pb2, corpus, tmp_path, shuffle):
    root, lst, lines = corpus
    whole = build(str(lst), str(root), str(tmp_path / "whole"), size=SIZE, shuffle=True, seed=1, jobs=2)
    # a derived list as the split module writes it: input order kept, kept labels renumbered
    keep = {1: 0, 3: 1}
    sub = [f"{p} {keep[int(lb)]}" for p, lb in (ln.split() for ln in lines) if int(lb) in keep]
    sub_list = _write_list(tmp_path / "sub.txt", sub)
    derived = derive(str(whole), str(sub_list), str(tmp_path / "derived"), shuffle=shuffle, seed=5, block=4)
    direct = build(str(sub_list), str(root), str(tmp_path / "direct"), size=SIZE, shuffle=shuffle,
                            seed=5, jobs=2)
    assert _items(derived) == _items(direct) and len(_items(derived)) == len(sub)
    assert read_manifest(derived)["labels"] == {"0": 8, "1": 7}
    assert verify(str(derived)) == []


def test_derive_refuses_unknown_path(pb2, corpus, tmp_path):
    root, lst, _ = corpus
    whole = build(str(lst), str(root), str(tmp_path / "whole"), size=SIZE, jobs=1)
    sub_list = _write_list(tmp_path / "sub.txt", ["n00/img_000.JPEG 0", "n01/elsewhere.JPEG 1"])
    with pytest.raises(TransferError, match=r"sub.txt:2: n01/elsewhere.JPEG"):
        derive(str(whole), str(sub_list), str(tmp_path / "derived"))


def test_mean_is_numpy_mean_of_warped_images(pb2, corpus, tmp_path):
    root, lst, lines = corpus
    db = build(str(lst), str(root), str(tmp_path / "db"), size=SIZE, jobs=2)
    out = tmp_path / "mean.binaryproto"
    compute_mean(str(db), str(out))
    want = np.mean([_expected(root / ln.split()[0]).astype(np.float64) for ln in lines], axis=0)
    blob = pb2.BlobProto.FromString(out.read_bytes())
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 3, SIZE, SIZE)
    assert not blob.HasField("shape")  # compute_image_mean writes the legacy dims only
    np.testing.assert_allclose(read_mean(str(out)), want, rtol=0, atol=1e-4)


def test_verify_catches_tampering(pb2, corpus, tmp_path, capsys):
    import lmdb

    root, lst, _ = corpus
    db = build(str(lst), str(root), str(tmp_path / "db"), size=SIZE, jobs=1)
    assert _cli(capsys, "data", "verify", str(db))[0] == 0
    env = lmdb.open(str(db), map_size=1 << 26)
    with env.begin(write=True) as txn:
        key = next(iter(txn.cursor()))[0]
        d = pb2.Datum.FromString(txn.get(key))
        d.label = 3 if d.label != 3 else 2
        d.height = SIZE - 1
        txn.put(key, d.SerializeToString())
        last = list(txn.cursor().iternext(values=False))[-1]
        txn.delete(last)
    env.close()
    problems = verify(str(db))
    text = "\n".join(problems)
    assert "count: manifest 30, database 29" in text and "label histogram differs" in text
    assert "Datum (3, 23, 24)" in text
    code, err = _cli(capsys, "data", "verify", str(db))
    assert code == 1 and "does not match its manifest" in err


def test_unfinished_database_is_not_a_database(pb2, corpus, tmp_path, capsys):
    root, lst, _ = corpus
    res = _killed_build(lst, root, tmp_path / "db", 8, block=5, jobs=1)
    assert res.returncode == -signal.SIGKILL
    for cmd in (["mean", str(tmp_path / "db"), "--out", str(tmp_path / "m.binaryproto")],
                ["verify", str(tmp_path / "db")]):
        code, err = _cli(capsys, "data", *cmd)
        assert code == 2 and "db.partial" in err and "has not finished" in err
    assert not (tmp_path / "m.binaryproto").exists()
    import fcntl

    fd = os.open(tmp_path / "db.partial.lock", os.O_RDWR | os.O_CREAT)  # as a second writer would hold it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(TransferError, match="another process is writing"):
            build(str(lst), str(root), str(tmp_path / "db"), size=SIZE, block=5, jobs=1)
    finally:
        os.close(fd)
    build(str(lst), str(root), str(tmp_path / "db"), size=SIZE, block=5, jobs=1)
    assert verify(str(tmp_path / "db")) == []
    assert not (tmp_path / "db.partial.lock").exists()  # a finished build leaves nothing beside it


def _caffe():
    from transfer.caffe.env import import_caffe

    try:
        caffe = import_caffe()
    except TransferError as exc:
        pytest.skip(f"Caffe not configured: {exc}")
    if not hasattr(caffe, "Net"):  # a root holding only caffe_pb2 (no pycaffe build)
        pytest.skip(f"no pycaffe under {caffe.__path__}")
    return caffe


@pytest.mark.requires_caffe
def test_caffe_data_layer_reads_database(pb2, corpus, tmp_path):
    caffe = _caffe()
    root, lst, lines = corpus
    db = build(str(lst), str(root), str(tmp_path / "db"), size=SIZE, jobs=2)
    mean_file = tmp_path / "mean.binaryproto"
    mean = compute_mean(str(db), str(mean_file))
    crop, batch = 17, 10
    proto = tmp_path / "data.prototxt"
    proto.write_text(f"""name: "data_only"
layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: TEST }}
  transform_param {{ crop_size: {crop} mean_file: "{mean_file}" }}
  data_param {{ source: "{db}" batch_size: {batch} backend: LMDB }} }}
""")
    net = caffe.Net(str(proto), caffe.TEST)
    net.forward()
    off = (SIZE - crop) // 2  # TEST phase: centre crop; the mean is taken at the same offsets
    for i, line in enumerate(lines[:batch]):
        path, label = line.split()
        want = (_expected(root / path).astype(np.float32) - mean)[:, off:off + crop, off:off + crop]
        np.testing.assert_allclose(net.blobs["data"].data[i], want, rtol=0, atol=1e-4)
        assert net.blobs["label"].data[i] == int(label)


def test_rebuild_is_up_to_date_and_other_options_refused(pb2, corpus, tmp_path, capsys):
    root, lst, _ = corpus
    args = ["data", "build", "--list", str(lst), "--root", str(root), "--out", str(tmp_path / "db"), "--jobs", "1"]
    assert _cli(capsys, *args, "--size", str(SIZE))[0] == 0
    code, err = _cli(capsys, *args, "--size", str(SIZE))
    assert code == 0 and "up to date" in err
    code, err = _cli(capsys, *args, "--size", "20")
    assert code == 2 and "not built from this list with these options" in err


def test_malformed_list_line_is_named(pb2, tmp_path):
    lst = _write_list(tmp_path / "files.txt", ["a.JPEG 0", "b.JPEG 1", "c.JPEG x"])
    with pytest.raises(TransferError, match=r"files.txt:3: expected 'relative/path label'"):
        build(str(lst), str(tmp_path), str(tmp_path / "db"), size=SIZE)
