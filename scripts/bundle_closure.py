"""The Debian packages still missing from a node bundle's library tree (scripts/node-bundle.sh).

Every ELF file under TREE names the libraries it needs (DT_NEEDED). Each one must be in the tree, or
in BASE: the C library family, libstdc++ and libgcc_s, which every Linux a GPU driver runs on has.
For the others this prints the Debian package that holds them here (`ldconfig -p`, `dpkg -S`), one
a line, for the bundle to add; a library this machine does not have is an error.

    python3 bundle_closure.py TREE
    python3 bundle_closure.py --glibc TREE    the newest GLIBC_ and GLIBCXX_ versions the tree needs
    python3 bundle_closure.py --manifest OUT TREE DEBS   write OUT/MANIFEST.json of a bundle's parts
"""
from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

BASE = {"libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "libutil.so.1",
        "libresolv.so.2", "libanl.so.1", "ld-linux-x86-64.so.2", "libstdc++.so.6", "libgcc_s.so.1"}


def elf_files(tree: Path) -> list[Path]:
    out = []
    for p in tree.rglob("*"):
        if p.is_file() and not p.is_symlink():
            with p.open("rb") as f:
                if f.read(4) == b"\x7fELF":
                    out.append(p)
    return out


def needed(path: Path) -> list[str]:
    text = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, timeout=60).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", text)


def system_libraries() -> dict[str, str]:
    """soname -> path of this machine's x86-64 libraries (ldconfig's cache)."""
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=60).stdout
    found: dict[str, str] = {}
    for m in re.finditer(r"^\s*(\S+) \(libc6,x86-64[^)]*\) => (\S+)$", out, re.M):
        found.setdefault(m.group(1), m.group(2))
    return found


def owner(path: str) -> str | None:
    """The Debian package holding `path` (tried as given and through the /lib -> /usr/lib merge)."""
    for cand in (path, path.replace("/usr/lib/", "/lib/", 1), path.replace("/lib/", "/usr/lib/", 1)):
        proc = subprocess.run(["dpkg", "-S", cand], capture_output=True, text=True, timeout=60)
        if proc.returncode == 0:
            return proc.stdout.split(":")[0].strip()
    return None


def missing_packages(tree: Path) -> tuple[set[str], list[str]]:
    """(packages to add, problems)."""
    files = elf_files(tree)
    have = {p.name for p in tree.rglob("*.so*")}
    system = system_libraries()
    packages, problems = set(), []
    for soname in sorted({s for f in files for s in needed(f)} - have - BASE):
        path = system.get(soname)
        pkg = owner(path) if path else None
        if pkg:
            packages.add(pkg)
        else:
            problems.append(f"{soname}: needed in the bundle, but no Debian package here holds it")
    return packages, problems


def newest_versions(tree: Path) -> dict[str, str]:
    """The newest GLIBC_x.y and GLIBCXX_3.4.n symbol versions the tree's files need."""
    need: dict[str, list[tuple[int, ...]]] = {"GLIBC": [], "GLIBCXX": []}
    for f in elf_files(tree):
        text = subprocess.run(["readelf", "-V", str(f)], capture_output=True, text=True, timeout=60).stdout
        for kind, ver in re.findall(r"Name: (GLIBC|GLIBCXX)_([0-9.]+)", text):
            need[kind].append(tuple(int(x) for x in ver.split(".")))
    return {k: ".".join(map(str, max(v))) for k, v in need.items() if v}


def write_manifest(out: Path, tree: Path, debs: Path) -> None:
    """OUT/MANIFEST.json: what the bundle in OUT holds and what its libraries need of the node."""
    def names(sub: str) -> list[str] | None:
        return sorted(p.name for p in (out / sub).iterdir()) if (out / sub).is_dir() else None
    manifest = {"made": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "host_os": "Debian " + Path("/etc/debian_version").read_text().strip(), "python": "3.11",
                "needs": newest_versions(tree), "debs": sorted(p.name for p in debs.glob("*.deb")),
                "wheels": names("wheels"), "cuda": names("cuda"), "sources": names("sources")}
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--manifest"] and len(args) == 4:
        write_manifest(*map(Path, args[1:]))
        sys.exit(0)
    if args[:1] == ["--glibc"] and len(args) == 2:
        for k, v in newest_versions(Path(args[1])).items():
            print(f"{k} {v}")
        sys.exit(0)
    if len(args) != 1 or not Path(args[0]).is_dir():
        sys.exit(__doc__.strip().splitlines()[-2].strip())
    pkgs, problems = missing_packages(Path(args[0]))
    print("\n".join(sorted(pkgs)))
    if problems:
        sys.exit("bundle_closure: error: " + "\n  ".join(problems))
