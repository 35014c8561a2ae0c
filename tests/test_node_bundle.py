"""The offline part of a node bundle (`make node-bundle`), proved on this machine: a bundle made here
(without the CUDA wheels: the build is the CPU one), then, in a network namespace with no network
(`unshare -rn`), in a copy of the checkout with an empty cache: the bundle unpacked, the venv made from
its Python 3.11 and wheels, Caffe built from its sdist and libraries, and `transfer doctor` run.

Then the build must take its libraries from the bundle: every library the `caffe` binary and pycaffe
load, other than the C library family, libstdc++ and libgcc_s, resolves inside the bundle, though this
machine has them all installed too. `make test-bundle` runs this (several minutes: it builds Caffe);
TRANSFER_TEST_BUNDLE=archive uses an existing bundle instead of making one.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from transfer import REPO

pytestmark = pytest.mark.bundle
sys.path.insert(0, str(REPO / "scripts"))
import bundle_closure  # noqa: E402


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    given = os.environ.get("TRANSFER_TEST_BUNDLE")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("bundle") / "node-bundle.tar"
    proc = subprocess.run([str(REPO / "scripts/node-bundle.sh"), "make", str(out), "--no-cuda"],
                          capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "PY": sys.executable})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"wrote {out}" in proc.stderr
    return out


def _checkout_copy(dest: Path) -> Path:
    """The checkout's files as git sees them (tracked and new, not ignored), without .venv or builds."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


OFFLINE = """set -e
if python3 -c 'import socket; socket.create_connection(("pypi.org", 443), timeout=5)' 2>/dev/null; then
  echo "NETWORK REACHABLE"; exit 3
fi
echo "no network: pypi.org unreachable"
envfile=$(scripts/node-bundle.sh unpack "$ARCHIVE")
. "$envfile"
make venv PYTHON="$PYTHON"
CAFFE_JOBS=2 nice make caffe
.venv/bin/python -m transfer doctor
"""


def test_the_bundle_builds_and_runs_caffe_with_no_network(archive, tmp_path):
    if not shutil.which("unshare"):
        pytest.skip("no unshare here: the offline test needs a network namespace")
    repo = _checkout_copy(tmp_path / "repo")
    cache = tmp_path / "cache"
    env = {**os.environ, "TRANSFER_CACHE": str(cache), "ARCHIVE": str(archive), "PIP_CACHE_DIR": str(tmp_path / "pip")}
    for var in ("VIRTUAL_ENV", "CAFFE_ROOT", "PYTHONPATH"):
        env.pop(var, None)
    proc = subprocess.run(["unshare", "-rn", "bash", "-c", OFFLINE], cwd=repo, capture_output=True, text=True,
                          timeout=5400, env=env)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 and "unshare" in proc.stderr and "Operation not permitted" in proc.stderr:
        pytest.skip(f"network namespaces are not permitted here: {proc.stderr.strip()}")
    assert proc.returncode == 0, out[-5000:]
    assert "no network: pypi.org unreachable" in out and "install-deps: using the libraries of the node bundle" in out
    assert "all checks passed" in out, out[-3000:]
    bundle = next((cache / "bundle").glob("*/env.sh")).parent
    base_prefix = subprocess.run([str(repo / ".venv/bin/python"), "-c", "import sys; print(sys.base_prefix)"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    assert Path(base_prefix).resolve().is_relative_to(bundle.resolve()), base_prefix
    root = Path((repo / ".venv/caffe-root").read_text().strip())
    for binary in (root / "build/tools/caffe", *sorted((root / "python/caffe").glob("_caffe*.so"))):
        resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", subprocess.run(
            ["ldd", str(binary)], capture_output=True, text=True, check=True).stdout, re.M))
        outside = {name: path for name, path in resolved.items() if name not in bundle_closure.BASE
                   and not Path(path).resolve().is_relative_to(cache.resolve())}
        assert not outside, f"{binary} loads these from outside the bundle: {outside}"
        assert any("/deps/usr/lib/" in p for p in resolved.values()), resolved
