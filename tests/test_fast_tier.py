"""`make test-fast` trains nothing, even where a Caffe build exists: no caffe process, no pycaffe.

The fast tier runs in a child pytest whose every Python process (the child's subprocesses too, through
PYTHONPATH) carries an audit hook that records each start of a `caffe` binary and each import of
pycaffe's `_caffe` extension, with the test that caused it. The record must stay empty.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from transfer import REPO

HOOK = '''
import os, sys
_LOG = os.environ["TRANSFER_CAFFE_AUDIT"]

def _note(what):
    with open(_LOG, "a") as f:
        f.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '?')}: {what}\\n")

def _hook(event, args):
    if event == "subprocess.Popen":
        argv = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
        exe = os.path.basename(str(args[0] or (argv[0] if argv else "")))
        if exe == "caffe" or (argv and os.path.basename(str(argv[0])) == "caffe"):
            _note(f"started {exe} {' '.join(map(str, argv[1:3]))}")
    elif event == "import" and args[0] in ("caffe._caffe", "_caffe"):
        _note("imported pycaffe's _caffe")

sys.addaudithook(_hook)
'''


@pytest.mark.requires_caffe   # proves something only where a Caffe exists to be started
def test_fast_tier_starts_no_caffe(tmp_path):
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(HOOK)
    log = tmp_path / "caffe-starts.log"
    log.write_text("")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "hook"), "TRANSFER_CAFFE_AUDIT": str(log)}
    env.pop("TRANSFER_TEST_REQUIRE", None)
    # the hook works: a caffe start in a child is caught (so an empty record below means something)
    probe = [sys.executable, "-c", "import subprocess; subprocess.run(['caffe', '--version'], check=False) "
             "if False else None; import subprocess as s\ntry: s.run(['caffe'])\nexcept OSError: pass"]
    subprocess.run(probe, env=env, cwd=REPO, timeout=60)
    assert "started caffe" in log.read_text()
    log.write_text("")
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider",
                          "tests"], env=env, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert log.read_text() == "", "the fast tier started Caffe:\n" + log.read_text()
