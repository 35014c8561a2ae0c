"""Bad input and faults at the data stage: each names its culprit and leaves nothing that looks finished.

Damaged and truncated databases (never a Bus error), a full disk during a build (a real small tmpfs),
builds resumed with another root or list, bad list files, labels beyond a net's class count, damaged
mean files. Real JPEGs, real LMDB, the real command line."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import lmdb
import numpy as np
import pytest

from test_datasets import _cli, _corpus, _items, _write_list  # noqa: E402

from transfer.data.build import build  # noqa: E402
from transfer.data.derive import derive  # noqa: E402
from transfer.data.means import compute_mean, read_mean  # noqa: E402
from transfer.data.verify import check_label_range, verify  # noqa: E402
from transfer.core.errors import Exit, TransferError  # noqa: E402
from transfer.data.lmdb_store import data_file_extent, read_manifest  # noqa: E402

SIZE = 24
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def corpus(tmp_path):
    root = tmp_path / "images"
    lines = _corpus(root, 30)
    return root, _write_list(tmp_path / "files.txt", lines), lines


@pytest.fixture()
def built(pb2, corpus, tmp_path):
    root, lst, _ = corpus
    return build(str(lst), str(root), str(tmp_path / "db"), size=SIZE, jobs=1)


# ------------------------------------------------------------------------------ damaged databases

def _damage(db: Path, how: str) -> None:
    f = db / "data.mdb"
    size = f.stat().st_size
    if how == "truncated":
        os.truncate(f, size // 2)
    elif how == "emptied":
        os.truncate(f, 0)
    elif how == "header overwritten":
        with open(f, "r+b") as h:
            h.write(np.random.default_rng(0).bytes(8192))
    elif how == "pages zeroed":
        with open(f, "r+b") as h:
            h.seek(8192)
            h.write(b"\0" * (size - 8192 - 4096))
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["truncated", "emptied", "header overwritten", "pages zeroed"])
def test_damaged_database_is_an_error_naming_the_file(built, tmp_path, capsys, how):
    _damage(built, how)
    mean = tmp_path / "mean.binaryproto"
    for cmd in (["verify", str(built)], ["mean", str(built), "--out", str(mean)],
                ["verify", str(built), "--classes", "4"]):
        code, err = _cli(capsys, "data", *cmd)
        assert code == Exit.ERROR and f"{built / 'data.mdb'}:" in err, (cmd, err)
        assert "copy it again or rebuild" in err or "rebuild the database" in err
    assert not mean.exists() and not list(tmp_path.glob(".mean*"))  # no mean, no temp file


def test_truncated_database_in_a_separate_process_is_no_bus_error(built):
    """The command as a user runs it: exit 2 with the file named, not 135 (SIGBUS)."""
    _damage(built, "truncated")
    res = subprocess.run([sys.executable, "-m", "transfer", "data", "verify", str(built)],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == Exit.ERROR and "truncated" in res.stderr and str(built / "data.mdb") in res.stderr


def test_damaged_source_stops_derive(built, corpus, tmp_path):
    _, _, lines = corpus
    _damage(built, "truncated")
    sub = _write_list(tmp_path / "sub.txt", [f"{ln.split()[0]} 0" for ln in lines[:4]])
    with pytest.raises(TransferError, match=r"data.mdb: truncated"):
        derive(str(built), str(sub), str(tmp_path / "derived"))
    assert not (tmp_path / "derived").exists() and not (tmp_path / "derived.partial").exists()


def test_extent_is_what_lmdb_wrote(built):
    assert data_file_extent(built / "data.mdb") == (built / "data.mdb").stat().st_size


def test_truncated_partial_build_refuses_to_resume(pb2, corpus, tmp_path):
    from test_datasets import _killed_build

    root, lst, _ = corpus
    res = _killed_build(lst, root, tmp_path / "db", 14, block=4, jobs=1)
    assert res.returncode < 0
    data = tmp_path / "db.partial" / "data.mdb"
    os.truncate(data, 4096 * 3)
    with pytest.raises(TransferError, match=r"db.partial/data.mdb: (truncated|not an LMDB).*delete .*db.partial"):
        build(str(lst), str(root), str(tmp_path / "db"), size=SIZE, block=4, jobs=1)
    assert not (tmp_path / "db").exists()


# ------------------------------------------------------------------------------ identity of a build

def test_resume_with_another_root_is_refused_naming_both(pb2, corpus, tmp_path, capsys):
    from test_datasets import _killed_build

    root, lst, _ = corpus
    other = tmp_path / "other_images"
    shutil.copytree(root, other)
    res = _killed_build(lst, root, tmp_path / "db", 10, block=4, jobs=1)
    assert res.returncode < 0
    args = ["data", "build", "--list", str(lst), "--out", str(tmp_path / "db"), "--size", str(SIZE),
            "--commit-every", "4", "--jobs", "1"]
    code, err = _cli(capsys, *args, "--root", str(other))
    assert code == Exit.ERROR and "unfinished build of something else" in err
    assert f"root: was '{root}', now '{other}'" in err
    # another list (same images, other order): both list paths named
    lst2 = _write_list(tmp_path / "files2.txt", list(reversed(lst.read_text().splitlines())))
    code, err = _cli(capsys, "data", "build", "--list", str(lst2), "--out", str(tmp_path / "db"), "--size",
                     str(SIZE), "--commit-every", "4", "--jobs", "1", "--root", str(root))
    assert code == Exit.ERROR and f"list_sha256: was {lst} (" in err and f"now {lst2} (" in err
    assert not (tmp_path / "db").exists()
    code, err = _cli(capsys, *args, "--root", str(root))  # the same build resumes and finishes
    assert code == 0 and "resuming" in err
    # finished: another root is refused too, the database is kept
    code, err = _cli(capsys, *args, "--root", str(other))
    assert code == Exit.ERROR and "not built from this list with these options" in err and str(other) in err
    assert verify(str(tmp_path / "db")) == []


def test_a_build_recorded_without_its_root_still_resumes(pb2, corpus, tmp_path):
    """An unfinished build recorded before roots were part of the identity resumes with any root."""
    from test_datasets import _killed_build

    root, lst, _ = corpus
    assert _killed_build(lst, root, tmp_path / "db", 10, block=4, jobs=1).returncode < 0
    info = tmp_path / "db.partial" / "build.json"
    record = json.loads(info.read_text())
    del record["root"], record["about"]
    info.write_text(json.dumps(record))
    db = build(str(lst), str(root), str(tmp_path / "db"), size=SIZE, block=4, jobs=1)
    assert verify(str(db)) == []


# ------------------------------------------------------------------------------ lists

BAD_LISTS = {
    "byte-order mark": (b"\xef\xbb\xbfn00/img_000.JPEG 0\n", ":1: starts with a UTF-8 byte-order mark"),
    "not UTF-8": (b"n00/img_000.JPEG 0\nn00/\xff\xfe.JPEG 1\n", ":2: not UTF-8 text (byte 0xff)"),
    "blank line": (b"n00/img_000.JPEG 0\n\nn01/img_001.JPEG 1\n", ":2: blank line"),
    "no label": (b"n00/img_000.JPEG 0\nn01/img_001.JPEG\n", ":2: expected 'relative/path label'"),
    "tab separated": (b"n00/img_000.JPEG\t0\n", ":1: expected 'relative/path label'"),
    "negative label": (b"n00/img_000.JPEG -1\n", ":1: expected 'relative/path label'"),
    "label past the classes": (b"n00/img_000.JPEG 0\nn01/img_001.JPEG 4\n", ":2: label 4 is outside 0..3"),
    "empty": (b"", "holds no images"),
}


@pytest.mark.parametrize("case", BAD_LISTS)
def test_bad_list_is_named_with_its_line(pb2, corpus, tmp_path, capsys, case):
    root, _, _ = corpus
    raw, want = BAD_LISTS[case]
    lst = tmp_path / "bad.txt"
    lst.write_bytes(raw)
    code, err = _cli(capsys, "data", "build", "--list", str(lst), "--root", str(root), "--out",
                     str(tmp_path / "db"), "--size", str(SIZE), "--classes", "4", "--jobs", "1")
    assert code == Exit.ERROR and (f"{lst}{want}" if want.startswith(":") else want) in err, err
    assert not (tmp_path / "db").exists() and not (tmp_path / "db.partial").exists()


def test_crlf_list_and_final_newline_are_fine(pb2, corpus, tmp_path):
    root, _, lines = corpus
    lst = tmp_path / "crlf.txt"
    lst.write_bytes(("\r\n".join(lines[:5]) + "\r\n").encode())
    db = build(str(lst), str(root), str(tmp_path / "db"), size=SIZE, jobs=1, num_classes=4)
    assert read_manifest(db)["count"] == 5


# ------------------------------------------------------------------------------ labels against a net

def test_label_range_against_the_net(built, tmp_path):
    assert check_label_range(built, 4) == {0: 8, 1: 8, 2: 7, 3: 7}
    with pytest.raises(TransferError, match=r"manifest.json: 7 images have labels outside 0..2 \(e.g. 3\), "
                                            r"but the net has 3 classes"):
        check_label_range(built, 3)


def test_label_range_of_a_database_without_manifest(pb2, tmp_path):
    """A database made elsewhere (convert_imageset): its Datums are read."""
    db = tmp_path / "foreign"
    env = lmdb.open(str(db), map_size=1 << 22)
    with env.begin(write=True) as txn:
        for i, label in enumerate([0, 1, 9, 2]):
            d = pb2.Datum(channels=1, height=2, width=2, data=bytes(4), label=label)
            txn.put(f"{i:08d}_x{i}.JPEG".encode(), d.SerializeToString())
    env.close()
    assert check_label_range(db, 10) == {0: 1, 1: 1, 9: 1, 2: 1}
    with pytest.raises(TransferError, match=r"foreign: 1 images have labels outside 0..4 \(e.g. 9\)"):
        check_label_range(db, 5)


# ------------------------------------------------------------------------------ means

@pytest.mark.parametrize("how", ["truncated", "not a blob", "wrong size"])
def test_damaged_mean_is_named(built, tmp_path, pb2, how):
    mean = tmp_path / "mean.binaryproto"
    compute_mean(str(built), str(mean))
    raw = mean.read_bytes()
    if how == "truncated":
        mean.write_bytes(raw[: len(raw) // 2])
    elif how == "not a blob":
        mean.write_bytes(b"\xff" * 64)
    else:
        blob = pb2.BlobProto.FromString(raw)
        blob.height = SIZE + 1
        mean.write_bytes(blob.SerializeToString())
    with pytest.raises(TransferError, match=rf"{mean}: (not a mean file|a mean of 3x{SIZE + 1}x{SIZE} needs)"):
        read_mean(str(mean))


# ------------------------------------------------------------------------------ disk full

def _userns() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# The build of the full-disk test, run in a child whose LMDB puts are counted: after the 12th Datum,
# another program (the filler) takes every free byte of the disk, as a download beside a build would.
# The build passed its own estimate of the space it needs; what it meets then is a disk full mid-way.
FILLED_BUILD = """
import errno, os, sys
import lmdb
from transfer import cli
from transfer.data import lmdb_store

filler, left = sys.argv[1], 12


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
                with open(filler, "wb") as f:
                    try:
                        while True:
                            f.write(b"x" * 4096)
                            f.flush()
                    except OSError as exc:
                        assert exc.errno == errno.ENOSPC
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
sys.exit(cli.main(sys.argv[2:]))
"""

DRIVER = """
import hashlib, json, os, subprocess, sys
disk, lst, root, out_json, filled_build = sys.argv[1:6]
db = os.path.join(disk, "db")
args = ["data", "build", "--list", lst, "--root", root, "--out", db, "--size", "96", "--commit-every", "4",
        "--jobs", "1"]
filler = os.path.join(disk, "filler")
first = subprocess.run([sys.executable, filled_build, filler, *args], capture_output=True, text=True)
after_first = sorted(os.listdir(disk))
os.unlink(filler)
second = subprocess.run([sys.executable, "-m", "transfer", *args], capture_output=True, text=True)
verify = subprocess.run([sys.executable, "-m", "transfer", "data", "verify", db], capture_output=True, text=True)
import lmdb
h = hashlib.sha256()
env = lmdb.open(db, readonly=True, lock=False)
with env.begin() as txn:
    for k, v in txn.cursor():
        h.update(k + bytes(v))
env.close()
json.dump({"first": [first.returncode, first.stderr], "after_first": after_first,
           "second": [second.returncode, second.stderr], "verify": verify.returncode,
           "digest": h.hexdigest()}, open(out_json, "w"))
"""


@pytest.mark.slow   # child processes (builds, kills, several commands): the full tier
@pytest.mark.skipif(not _userns(), reason="needs a user namespace (unshare -rm) to mount a small tmpfs")
def test_full_disk_stops_cleanly_and_a_rerun_completes(pb2, corpus, tmp_path):
    root, lst, _ = corpus
    disk, driver, result = tmp_path / "disk", tmp_path / "driver.py", tmp_path / "result.json"
    disk.mkdir()
    driver.write_text(textwrap.dedent(DRIVER))
    filled = tmp_path / "filled_build.py"
    filled.write_text(FILLED_BUILD)
    script = (f"mount -t tmpfs -o size=2m tmpfs {disk} && cd {REPO} && "
              f"exec {sys.executable} {driver} {disk} {lst} {root} {result} {filled}")
    res = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    got = json.loads(result.read_text())
    code, err = got["first"]
    assert code == Exit.NO_SPACE, err                      # not 135 / -7 (SIGBUS)
    assert "no space left on the device" in err and f"{disk}/db.partial" in err and "run the same command" in err
    assert "db" not in got["after_first"] and "db.partial" in got["after_first"]   # nothing looks finished
    code, err = got["second"]
    assert code == 0 and "resuming" in err, err
    assert got["verify"] == 0
    ref = build(str(lst), str(root), str(tmp_path / "ref"), size=96, jobs=1)
    h = hashlib.sha256()
    for k, v in _items(ref):
        h.update(k + v)
    assert got["digest"] == h.hexdigest()


# ------------------------------------------------------------------------------ options out of range

@pytest.mark.parametrize("cmd, option, value", [
    ("build", "--commit-every", "0"), ("build", "--commit-every", "-3"), ("build", "--seed", "-1"),
    ("build", "--jobs", "-2"), ("build", "--size", "0"), ("derive", "--commit-every", "0"),
    ("derive", "--seed", "-1"), ("relabel", "--commit-every", "0"), ("relabel", "--commit-every", "-3")])
def test_options_out_of_range_are_named_and_nothing_is_written(built, corpus, tmp_path, capsys, cmd, option,
                                                               value):
    root, lst, lines = corpus
    out = tmp_path / "out"
    args = {"build": ["--list", str(lst), "--root", str(root), "--shuffle"],
            "derive": ["--from", str(built), "--list", str(lst), "--shuffle"],
            "relabel": ["--from", str(built), "--map", str(_write_list(tmp_path / "map.txt", ["0 0", "1 1"]))]}[cmd]
    with pytest.raises(SystemExit) as stop:
        _cli(capsys, "data", cmd, *args, "--out", str(out), option, value)
    err = capsys.readouterr().err
    assert stop.value.code == Exit.ERROR and f"argument {option}: must be" in err and f"got {value}" in err, err
    assert "Traceback" not in err
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("out")]   # no out, out.partial, lock
    # the functions themselves refuse them too (callers in code), before anything is written
    with pytest.raises(TransferError, match=r"--commit-every must be a whole number of at least 1, got 0"):
        derive(str(built), str(lst), str(out), block=0)
    with pytest.raises(TransferError, match=r"--seed must be in 0\.\.4294967295, got -1"):
        build(str(lst), str(root), str(out), size=SIZE, shuffle=True, seed=-1)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("out")]


# ------------------------------------------------------------------------------ decompression bombs

def _header_says(src: Path, dst: Path, width: int, height: int) -> Path:
    """A copy of a real JPEG whose frame header (SOF0) claims another size: the data stay those of
    the small image, so a decoder runs out of data and fills the rest with grey."""
    raw = bytearray(src.read_bytes())
    at = raw.find(b"\xff\xc0")
    assert at > 0
    raw[at + 5:at + 9] = struct.pack(">HH", height, width)
    dst.write_bytes(bytes(raw))
    return dst


def _png_bomb(path: Path, width: int, height: int) -> Path:
    """A valid grey PNG of width x height zeros: a few hundred KB that decode to width*height*3 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(1)
    row = bytes(width + 1)   # filter byte 0, then the row
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_jpeg_whose_header_promises_more_than_its_data_is_bad(pb2, corpus, tmp_path, capsys):
    """A 1 KB JPEG whose header says 20000x20000: it used to be stored as an all-grey image (exit 0,
    2.4 GB of memory). Now its list line is named and nothing is decoded; --skip-bad leaves it out."""
    root, _, lines = corpus
    bomb = _header_says(root / lines[5].split()[0], root / "n01" / "bomb.JPEG", 20000, 20000)
    assert bomb.stat().st_size < 4096
    lst = _write_list(tmp_path / "files.txt", lines[:8] + ["n01/bomb.JPEG 1"] + lines[8:12])
    args = ["data", "build", "--list", str(lst), "--root", str(root), "--out", str(tmp_path / "db"),
            "--size", str(SIZE), "--jobs", "2"]
    code, err = _cli(capsys, *args)
    assert code == Exit.ERROR, err
    assert f"{lst}:9: {bomb}: its header says 20000x20000 pixels, but it holds" in err
    assert "the header is damaged and the image would decode to grey" in err
    assert not (tmp_path / "db").exists()                          # nothing looks finished
    code, err = _cli(capsys, *args, "--skip-bad")
    assert code == 0, err
    report = (tmp_path / "db.skipped.tsv").read_text().splitlines()
    assert report[1].startswith("9\tn01/bomb.JPEG\tits header says 20000x20000") and len(report) == 2
    assert read_manifest(tmp_path / "db")["count"] == 12 and verify(str(tmp_path / "db")) == []


def test_progressive_and_big_header_jpegs_pass_the_header_check(pb2, tmp_path):
    """The header check reads past APP segments (EXIF, ICC) and accepts progressive JPEGs."""
    from PIL import Image

    from test_datasets import _expected, _textured

    root = tmp_path / "img"
    root.mkdir()
    rgb = _textured(np.random.default_rng(3), 40, 50)
    Image.fromarray(rgb).save(root / "prog.JPEG", quality=90, progressive=True)
    Image.fromarray(rgb).save(root / "icc.JPEG", quality=90, icc_profile=bytes(range(256)) * 300)
    lst = _write_list(tmp_path / "l.txt", ["prog.JPEG 0", "icc.JPEG 1"])
    db = build(str(lst), str(root), str(tmp_path / "db"), size=SIZE, jobs=1)
    for (_, value), name in zip(_items(db), ["prog.JPEG", "icc.JPEG"]):
        assert np.frombuffer(pb2.Datum.FromString(value).data, np.uint8).tobytes() == _expected(root / name).tobytes()


def test_image_over_the_pixel_limit_is_not_decoded(pb2, corpus, tmp_path):
    """A valid PNG of 110 megapixels (480 KB of zeros): refused from its header, in bounded memory
    (the build process stays below the 330 MB one decoded copy of it takes), exit 2, its line named.
    A real image over a small --max-pixels is refused the same way, and builds when the limit is raised."""
    root, _, lines = corpus
    _png_bomb(root / "n00" / "huge.png", 11000, 10000)
    lst = _write_list(tmp_path / "files.txt", lines[:3] + ["n00/huge.png 0"])
    build_cmd = [sys.executable, "-m", "transfer", "data", "build", "--list", str(lst), "--root", str(root),
                 "--out", str(tmp_path / "db"), "--size", str(SIZE), "--jobs", "1"]
    wrapper = ("import json, resource, subprocess, sys\n"
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "print(json.dumps([r.returncode, r.stderr, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")
    res = subprocess.run([sys.executable, "-c", wrapper, *build_cmd], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    code, err, peak_kib = json.loads(res.stdout)
    assert code == Exit.ERROR, err
    assert f"{lst}:4: {root / 'n00' / 'huge.png'}: its header says 11000x10000 = 110,000,000 pixels, " \
           "over the limit of 100,000,000 (--max-pixels)" in err
    assert peak_kib * 1024 < 3 * 11000 * 10000, peak_kib       # never decoded
    assert not (tmp_path / "db").exists()
    small = _write_list(tmp_path / "small.txt", lines[:3])
    with pytest.raises(TransferError, match=r"small.txt:1: .*img_000.JPEG: its header says \d+x\d+ = [\d,]+ "
                                            r"pixels, over the limit of 100 \(--max-pixels\)"):
        build(str(small), str(root), str(tmp_path / "db2"), size=SIZE, jobs=1, max_pixels=100)
    assert not (tmp_path / "db2").exists()
    assert read_manifest(build(str(small), str(root), str(tmp_path / "db2"), size=SIZE, jobs=1,
                               max_pixels=3600))["count"] == 3


# ------------------------------------------------------------------------------ damaged manifests

MANIFEST_DAMAGE = {
    "cut short": (lambda raw: raw[:100], "the database's manifest is damaged or cut short: not JSON at line"),
    "emptied": (lambda raw: b"", "the database's manifest is empty"),
    "not a manifest": (lambda raw: b"[1, 2]\n", "not a manifest of this project's databases"),
}


@pytest.mark.parametrize("how", MANIFEST_DAMAGE)
def test_damaged_manifest_is_named_with_how_to_recover(built, corpus, tmp_path, capsys, how):
    """verify, mean, derive and a rebuild used to end in a JSONDecodeError traceback (mean even exited 0)."""
    root, lst, lines = corpus
    cut, says = MANIFEST_DAMAGE[how]
    manifest = built / "manifest.json"
    manifest.write_bytes(cut(manifest.read_bytes()))
    sub = _write_list(tmp_path / "sub.txt", [f"{ln.split()[0]} 0" for ln in lines[:4]])
    mean = tmp_path / "mean.binaryproto"
    for cmd in (["verify", str(built)], ["mean", str(built), "--out", str(mean)],
                ["derive", "--from", str(built), "--list", str(sub), "--out", str(tmp_path / "derived")],
                ["build", "--list", str(lst), "--root", str(root), "--out", str(built), "--size", str(SIZE)]):
        code, err = _cli(capsys, "data", *cmd)
        assert code == Exit.ERROR, (cmd, err)
        assert f"{manifest}: {says}" in err and f"delete {built} and build it again" in err, (cmd, err)
        assert "Traceback" not in err
    assert not mean.exists() and not (tmp_path / "derived").exists() and not (tmp_path / "derived.partial").exists()


@pytest.mark.parametrize("how", ["emptied", "cut short", "another shape"])
def test_damaged_mean_is_not_up_to_date(built, tmp_path, pb2, caplog, how):
    """prepare's up-to-date decision for means (means.update_mean): a mean that is empty, cut short or of
    another shape than the database's Datums is made again, saying why; read_mean names it."""
    from transfer.data.means import mean_problem, update_mean

    mean = tmp_path / "mean.binaryproto"
    good = compute_mean(str(built), str(mean))
    assert mean_problem(mean, built) is None
    raw = mean.read_bytes()
    if how == "emptied":
        mean.write_bytes(b"")
    elif how == "cut short":
        mean.write_bytes(raw[:60])
    else:
        blob = pb2.BlobProto(num=1, channels=3, height=8, width=8)
        blob.data.extend([1.0] * 192)
        mean.write_bytes(blob.SerializeToString())
    says = {"emptied": "empty (0 bytes)", "cut short": "not a mean file (no BlobProto in its 60 bytes)",
            "another shape": f"a mean of 3x8x8, but the database's images are 3x{SIZE}x{SIZE}"}[how]
    assert mean_problem(mean, built) == says
    with pytest.raises(TransferError, match=re.escape(f"{mean}: {says}; make it again")):
        read_mean(str(mean), (3, SIZE, SIZE))
    update_mean(built, mean)
    assert f"{mean}: {says}; making it again" in caplog.text
    np.testing.assert_array_equal(read_mean(str(mean), (3, SIZE, SIZE)), good)


# ------------------------------------------------------------------------------ paths outside the root

@pytest.mark.parametrize("kind", ["absolute", "parent", "parent inside"])
def test_list_paths_outside_the_root_are_refused(pb2, corpus, tmp_path, capsys, kind):
    """A list's paths are relative to --root; one that is absolute or climbs with '..' would read any file
    (it used to be read and stored). Refused naming the line, unless --allow-outside-root."""
    root, _, lines = corpus
    outside = tmp_path / "elsewhere.JPEG"
    shutil.copy(root / lines[0].split()[0], outside)
    path = {"absolute": str(outside), "parent": "../elsewhere.JPEG",
            "parent inside": "n00/../n01/img_001.JPEG"}[kind]
    lst = _write_list(tmp_path / "files.txt", lines[:4] + [f"{path} 1"])
    args = ["data", "build", "--list", str(lst), "--root", str(root), "--out", str(tmp_path / "db"),
            "--size", str(SIZE), "--jobs", "1"]
    code, err = _cli(capsys, *args)
    assert code == Exit.ERROR and f"{lst}:5: {path!r} " in err and "--allow-outside-root" in err, err
    assert ("is an absolute path" if kind == "absolute" else "climbs out of the image root with '..'") in err
    assert not (tmp_path / "db").exists() and not (tmp_path / "db.partial").exists()
    code, err = _cli(capsys, *args, "--allow-outside-root")
    assert code == 0, err
    assert read_manifest(tmp_path / "db")["count"] == 5


def test_symlinks_under_the_root_are_followed(pb2, corpus, tmp_path):
    """A class folder linked onto another disk is the root owner's choice, not the list's: it is read."""
    root, _, lines = corpus
    other = tmp_path / "other_disk"
    shutil.move(root / "n01", other)
    (root / "n01").symlink_to(other)
    lst = _write_list(tmp_path / "files.txt", lines[:6])
    db = build(str(lst), str(root), str(tmp_path / "db"), size=SIZE, jobs=1)
    assert read_manifest(db)["count"] == 6


SMALL_DISK = """
import json, os, subprocess, sys
disk, lst, root, whole, mapfile, out_json = sys.argv[1:7]
t = [sys.executable, "-m", "transfer", "data"]
runs = {
    "build": subprocess.run(t + ["build", "--list", lst, "--root", root, "--out", os.path.join(disk, "db"),
                                 "--size", "256", "--jobs", "1"], capture_output=True, text=True),
    "derive": subprocess.run(t + ["derive", "--from", whole, "--list", lst, "--out", os.path.join(disk, "sub")],
                             capture_output=True, text=True),
    "relabel": subprocess.run(t + ["relabel", "--from", whole, "--map", mapfile, "--out", os.path.join(disk, "rel")],
                              capture_output=True, text=True),
}
st = os.statvfs(disk)
json.dump({"runs": {k: [r.returncode, r.stderr] for k, r in runs.items()}, "left": sorted(os.listdir(disk)),
           "used": (st.f_blocks - st.f_bfree) * st.f_frsize}, open(out_json, "w"))
"""


@pytest.mark.slow   # child processes (builds, kills, several commands): the full tier
@pytest.mark.skipif(not _userns(), reason="needs a user namespace (unshare -rm) to mount a small tmpfs")
def test_database_larger_than_the_free_disk_is_refused_before_writing(pb2, corpus, tmp_path):
    """30 images of 3x256x256 (about 5.7 MiB) onto a 2 MiB disk: build, derive and relabel used to start and
    fill the disk to its last byte before exit 74. Now each is refused with the numbers before writing."""
    root, lst, _ = corpus
    whole = build(str(lst), str(root), str(tmp_path / "whole"), size=256, jobs=1)
    mapfile = _write_list(tmp_path / "map.txt", ["0 0", "1 1", "2 2", "3 3"])
    disk, driver, result = tmp_path / "disk", tmp_path / "driver.py", tmp_path / "result.json"
    disk.mkdir()
    driver.write_text(textwrap.dedent(SMALL_DISK))
    script = (f"mount -t tmpfs -o size=2m tmpfs {disk} && cd {REPO} && "
              f"exec {sys.executable} {driver} {disk} {lst} {root} {whole} {mapfile} {result}")
    res = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    got = json.loads(result.read_text())
    for name, (code, err) in got["runs"].items():
        assert code == Exit.NO_SPACE, (name, err)
        out = disk / {"build": "db", "derive": "sub", "relabel": "rel"}[name]
        assert re.search(rf"{out}: its 30 images of 3x256x256 need "
                         rf"about 5\.\d MiB, and {disk} has 2\.0 MiB free; free space or write the database "
                         r"elsewhere", err), (name, err)
        assert "Traceback" not in err
    assert got["left"] == [] and got["used"] == 0     # nothing written, not even a lock or DB.partial


# ------------------------------------------------------------------------------ Ctrl-C

def _slow_build(tmp_path: Path) -> list[str]:
    """The command of a build slow enough to be stopped in the middle: 200 decodes of a 1000x1000 JPEG."""
    from PIL import Image

    root = tmp_path / "img"
    root.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (1000, 1000, 3), dtype=np.uint8)).save(root / "big.JPEG", quality=90)
    lst = _write_list(tmp_path / "big.txt", [f"big.JPEG {i % 4}" for i in range(200)])
    return [sys.executable, "-m", "transfer", "data", "build", "--list", str(lst), "--root", str(root),
            "--out", str(tmp_path / "db"), "--size", "16", "--jobs", "2", "--commit-every", "4"]


def _started(proc: subprocess.Popen, partial: Path) -> None:
    """Wait until a build writes into `partial` with its decoding processes started."""
    import time

    import tinyrun

    end = time.time() + 120
    while time.time() < end and proc.poll() is None and not (
            (partial / "data.mdb").is_file() and len(tinyrun.children_of(proc.pid)) >= 2):
        time.sleep(0.02)
    assert proc.poll() is None, "the build ended before it could be stopped"


@pytest.mark.slow   # child processes (builds, kills, several commands): the full tier
def test_ctrl_c_stops_a_build_with_130_and_a_rerun_resumes(pb2, tmp_path):
    """Ctrl-C (SIGINT to the foreground group: the command and its decoding processes) stops any command
    but train/run with 130, as `transfer --help` says, keeping DB.partial; the same command continues.
    (A decoding process used to take the KeyboardInterrupt and die with its task: the build then hung,
    or went on to the end and exited 0.)"""
    import signal

    cmd = _slow_build(tmp_path)
    # SIGINT at its default in the command, as at a terminal: a shell without job control starts its
    # background jobs (`make test &`) with SIGINT ignored, which Python and so the command would keep
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _started(proc, tmp_path / "db.partial")
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == Exit.CTRL_C == 130, err
    assert "transfer data: interrupted" in err and "Traceback" not in err and "Exception ignored" not in err
    assert (tmp_path / "db.partial").is_dir() and not (tmp_path / "db").exists()
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "resuming" in res.stderr, res.stderr
    assert read_manifest(tmp_path / "db")["count"] == 200 and verify(str(tmp_path / "db")) == []


@pytest.mark.slow   # child processes (builds, kills, several commands): the full tier
def test_a_decoding_process_that_dies_is_an_error_not_a_hang(pb2, tmp_path):
    """Decoding processes killed mid-build (as the kernel's OOM killer would): the build stops naming it,
    exit 2, DB.partial kept; it used to wait for ever on the task a dead worker took with it."""
    import signal
    import time

    from PIL import Image

    import tinyrun

    cmd = _slow_build(tmp_path)
    # after the first block, images that take a while to decode: the workers are busy when killed
    noise = np.random.default_rng(1).integers(0, 255, (2500, 2500, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "img" / "slow.JPEG", quality=90)
    # (3,000 of them: at a draft-mode decode of ~20 ms, still a minute of work for two workers, so the
    # build is mid-list when they are killed however fast the machine)
    lst = _write_list(tmp_path / "big.txt", ["big.JPEG 0"] * 4 + ["slow.JPEG 1"] * 3000)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _started(proc, tmp_path / "db.partial")
    time.sleep(1.0)   # into the slow images: both workers mid-decode (each takes a good part of a second)
    workers = tinyrun.children_of(proc.pid)
    assert len(workers) == 2, workers
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == Exit.ERROR, err
    assert "a decoding process died (killed by SIGKILL) while decoding the images from place" in err, err
    assert (tmp_path / "db.partial").is_dir() and not (tmp_path / "db").exists()
    assert lst.is_file()
