"""Apply the patch series caffe/patches/NNNN-*.patch, in order, to a copy of a Caffe tree.

Usage: apply_patches.py TREE [--foreign [--gpu]] [--record FILE]

Each patch is a unified diff made against the pinned sdist, after a header that says what it changes
and why. The header may also name whole files of ours that the patch installs (`Add: SRC -> DEST`
for a new file, `Replace: SRC -> DEST` over an existing one; SRC beside this script), and must say
whether a foreign tree may lack it: `Foreign-tree: required`, `Foreign-tree: gpu-only, why` (required
in a CUDA build; a CPU build compiles none of its code) or `Foreign-tree: optional, why`.

Every hunk must match its context exactly (an offset is allowed, fuzz is not). The whole series is
applied in memory first and written only when it applied, so a tree is never half-patched:
  - the sdist (default): any hunk that does not apply is an error naming the patch and the hunk
    (file and line), exit 1, and the tree is left as it was;
  - --foreign (CAFFE_SRC; --gpu for a CUDA build): a patch applies whole or not at all; an optional
    one that does not is reported by name with the reason, a required one is an error as above.
Applying the series twice is refused: the first hunk finds its own result already there.
--record FILE writes what was applied (names, sha256, installed files) as JSON for BUILD_INFO.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERIES = HERE / "patches"
NAME = re.compile(r"^(\d{4})-[a-z0-9][a-z0-9.-]*\.patch$")
HUNK = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
INSTALL = re.compile(r"^(Add|Replace): (\S+) -> (\S+)$")


class PatchError(Exception):
    """A patch that does not apply, or a malformed one: the message names the hunk or line."""


@dataclass
class Hunk:
    header: str          # "@@ -227,6 +227,15 @@"
    old_start: int
    old: list[bytes]     # context and removed lines, newline included
    new: list[bytes]     # context and added lines


@dataclass
class FileDiff:
    path: str            # relative to the tree
    created: bool
    hunks: list[Hunk] = field(default_factory=list)


@dataclass
class Patch:
    path: Path
    subject: str
    need: str            # in a foreign tree: required, gpu-only or optional
    installs: list[tuple[str, str, str]]  # (Add|Replace, source beside this script, dest in the tree)
    files: list[FileDiff]

    @property
    def name(self) -> str:
        return self.path.name


def split_lines(data: bytes) -> list[bytes]:
    """Lines with their b"\\n" (only \\n ends a line: a stray \\r stays part of it)."""
    parts = data.split(b"\n")
    return [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def parse_header(path: Path, text: str) -> tuple[str, str, list[tuple[str, str, str]]]:
    subject, need, installs = "", "", []
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("Subject: "):
            subject = line[len("Subject: "):]
        elif line.startswith("Foreign-tree: "):
            need = line[len("Foreign-tree: "):].split(",")[0]
            if line != "Foreign-tree: required" and need not in ("gpu-only", "optional"):
                raise PatchError(f"{path}:{n}: Foreign-tree must be 'required', 'gpu-only, <why>' "
                                 "or 'optional, <why>'")
        elif line.startswith(("Add: ", "Replace: ")):
            m = INSTALL.match(line)
            if not m or not (HERE / m.group(2)).is_file():
                raise PatchError(f"{path}:{n}: expected 'Add|Replace: FILE -> PATH' with FILE beside "
                                 f"{Path(__file__).name}, got '{line}'")
            installs.append(m.groups())
    if not subject or not need:
        raise PatchError(f"{path}: the header needs a 'Subject:' and a 'Foreign-tree:' line")
    return subject, need, installs


def parse_hunk(path: Path, lines: list[bytes], i: int) -> tuple[Hunk, int]:
    """The hunk whose @@ line is lines[i]; returns it and the index after it."""
    m = HUNK.match(lines[i])
    if not m:
        raise PatchError(f"{path}:{i + 1}: expected a hunk header '@@ -a,b +c,d @@'")
    old_left, new_left = int(m.group(2) or 1), int(m.group(4) or 1)
    hunk = Hunk(lines[i].split(b" @@")[0].decode() + " @@", int(m.group(1)), [], [])
    i += 1
    last_tag = b""
    while old_left or new_left or (i < len(lines) and lines[i].startswith(b"\\")):
        if i >= len(lines):
            raise PatchError(f"{path}: the file ends inside the hunk {hunk.header}")
        line = lines[i]
        tag, body = line[:1], line[1:]
        if line == b"\n":                          # an empty context line whose space was stripped
            tag, body = b" ", b"\n"
        if tag == b"\\":                           # "\ No newline at end of file"
            for side in (hunk.old, hunk.new):
                if side and last_tag in (b" ", b"-" if side is hunk.old else b"+"):
                    side[-1] = side[-1].rstrip(b"\n")
        elif tag in (b" ", b"-", b"+"):
            if tag != b"+":
                hunk.old.append(body)
                old_left -= 1
            if tag != b"-":
                hunk.new.append(body)
                new_left -= 1
            if old_left < 0 or new_left < 0:
                raise PatchError(f"{path}:{i + 1}: more lines than the hunk header {hunk.header} says")
        else:
            raise PatchError(f"{path}:{i + 1}: the hunk {hunk.header} ends early")
        last_tag = tag
        i += 1
    return hunk, i


def parse_patch(path: Path) -> Patch:
    lines = split_lines(path.read_bytes())
    start = next((k for k, l in enumerate(lines) if l.startswith((b"diff --git ", b"--- "))), len(lines))
    subject, need, installs = parse_header(path, b"".join(lines[:start]).decode())
    files: list[FileDiff] = []
    i = start
    while i < len(lines):
        line = lines[i]
        if line.startswith(b"--- "):
            target = lines[i + 1] if i + 1 < len(lines) else b""
            if not target.startswith(b"+++ b/"):
                raise PatchError(f"{path}:{i + 2}: expected '+++ b/PATH' after '---'")
            files.append(FileDiff(target[6:].rstrip(b"\n").decode(), line.rstrip(b"\n") == b"--- /dev/null"))
            i += 2
        elif line.startswith(b"@@"):
            if not files:
                raise PatchError(f"{path}:{i + 1}: a hunk before any '--- a/PATH' line")
            hunk, i = parse_hunk(path, lines, i)
            files[-1].hunks.append(hunk)
        else:                                      # "diff --git", "index", mode lines
            i += 1
    if not files and not installs:
        raise PatchError(f"{path}: no diff and nothing to install")
    return Patch(path, subject, need, installs, files)


def describe_mismatch(lines: list[bytes], hunk: Hunk, at: int, path: str) -> str:
    if len(lines) < at + len(hunk.old):
        return f"{path} has {len(lines)} lines, the hunk needs {at + len(hunk.old)}"
    for k, want in enumerate(hunk.old):
        if lines[at + k] != want:
            return (f"line {at + k + 1} is {lines[at + k].decode(errors='replace').rstrip()!r}, "
                    f"the patch expects {want.decode(errors='replace').rstrip()!r}")
    return "no match"


def apply_hunks(path: str, lines: list[bytes], hunks: list[Hunk]) -> list[bytes]:
    """`lines` with every hunk applied; PatchError naming the first that does not apply."""
    lines, delta, floor = list(lines), 0, 0
    for number, hunk in enumerate(hunks, 1):
        expected = max(0, hunk.old_start - (1 if hunk.old else 0) + delta)
        size = len(hunk.old)
        candidates = sorted(range(floor, len(lines) - size + 1), key=lambda p: (abs(p - expected), p))
        at = next((p for p in candidates if lines[p:p + size] == hunk.old), None)
        if at is None:
            where = f"hunk {number} of {path} ({hunk.header}, at line {expected + 1})"
            if any(lines[p:p + len(hunk.new)] == hunk.new for p in range(len(lines) - len(hunk.new) + 1)):
                raise PatchError(f"{where}: its result is already there (the series was applied before)")
            raise PatchError(f"{where}: {describe_mismatch(lines, hunk, min(expected, len(lines)), path)}")
        lines[at:at + size] = hunk.new
        delta = at - (hunk.old_start - (1 if hunk.old else 0)) + len(hunk.new) - size
        floor = at + len(hunk.new)
    return lines


def apply_patch(patch: Patch, tree: Path, overlay: dict[str, bytes]) -> dict[str, bytes]:
    """The files `patch` changes, with their new content (nothing is written); PatchError if any
    hunk or install does not apply. `overlay` holds the earlier patches' results."""
    def read(rel: str) -> bytes | None:
        return overlay[rel] if rel in overlay else (tree / rel).read_bytes() if (tree / rel).is_file() else None
    out: dict[str, bytes] = {}
    for fd in patch.files:
        old = out.get(fd.path, read(fd.path))
        if fd.created != (old is None):
            raise PatchError(f"{fd.path}: " + ("exists already: the patch creates it" if fd.created
                                                else "no such file in the tree"))
        out[fd.path] = b"".join(apply_hunks(fd.path, split_lines(old or b""), fd.hunks))
    for kind, source, dest in patch.installs:
        if (kind == "Add") != (read(dest) is None):
            raise PatchError(f"{kind} {source} -> {dest}: " + (
                "exists already" if kind == "Add" else "no such file in the tree to replace"))
        out[dest] = (HERE / source).read_bytes()
    return out


def load_series(series: Path) -> list[Patch]:
    paths = sorted(series.glob("*.patch"))
    numbers = [NAME.match(p.name) for p in paths]
    bad = [p.name for p, m in zip(paths, numbers) if not m]
    if bad or not paths:
        raise PatchError(f"{series}: patch names must be NNNN-what.patch (got {bad or 'none'})")
    if [int(m.group(1)) for m in numbers] != list(range(1, len(paths) + 1)):
        raise PatchError(f"{series}: patches must be numbered 0001, 0002, ... without gaps or repeats")
    return [parse_patch(p) for p in paths]


def shown(path: Path) -> str:
    """caffe/patches/NAME for the series here, the path as given otherwise."""
    return str(path.relative_to(HERE.parent)) if path.is_relative_to(HERE.parent) else str(path)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run(tree: Path, foreign: bool, gpu: bool = False, series: Path = SERIES) -> list[dict]:
    """Apply the series to `tree`; one record per patch. PatchError (nothing written) on failure."""
    overlay: dict[str, bytes] = {}
    records = []
    for patch in load_series(series):
        record = {"name": patch.name, "sha256": sha256(patch.path.read_bytes()), "subject": patch.subject}
        try:
            changed = apply_patch(patch, tree, overlay)
        except PatchError as e:
            if not foreign or patch.need == "required" or (gpu and patch.need == "gpu-only"):
                why = {"required": " (required in any tree)", "gpu-only": " (required in a CUDA build)"}
                raise PatchError(f"{shown(patch.path)} does not apply: {e}"
                                 + (why[patch.need] if foreign else "")) from None
            records.append({**record, "applied": False, "need": patch.need, "reason": str(e)})
            continue
        overlay.update(changed)
        installs = {dest: sha256((HERE / src).read_bytes()) for _, src, dest in patch.installs}
        records.append({**record, "applied": True, "files": sorted(changed), "installs": installs})
    for rel, data in overlay.items():
        path = tree / rel
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(0o644)
        else:
            path.write_bytes(data)              # keeps the file's mode
    return records


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tree", type=Path)
    ap.add_argument("--foreign", action="store_true", help="a tree other than the pinned sdist (CAFFE_SRC)")
    ap.add_argument("--gpu", action="store_true", help="a CUDA build: gpu-only patches are required")
    ap.add_argument("--record", type=Path, help="write the applied series here (JSON)")
    args = ap.parse_args(argv)
    if not (args.tree / "src/caffe/proto/caffe.proto").is_file():
        ap.error(f"{args.tree} is not a Caffe source tree (no src/caffe/proto/caffe.proto)")
    try:
        records = run(args.tree, args.foreign, args.gpu)
    except PatchError as e:
        print(f"apply_patches: error: {e}; nothing was patched", file=sys.stderr)
        return 1
    for r in records:
        if r["applied"]:
            print(f"  applied {r['name']}: {r['subject']}")
        else:
            why = "gpu-only: a CPU build compiles none of it" if r["need"] == "gpu-only" else "optional here"
            print(f"  NOT APPLIED {r['name']} ({why}): {r['reason']}")
    if args.record:
        tmp = args.record.with_name(args.record.name + ".tmp")
        tmp.write_text(json.dumps({"mode": "foreign" if args.foreign else "sdist", "series": records}, indent=1))
        os.replace(tmp, args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
