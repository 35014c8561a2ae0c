"""Reading the YAML files a user writes (plans, speed figures): YAML's safe subset, and no key twice.

PyYAML keeps the last of two equal keys in a mapping without a word, so a plan with two `solver:`
blocks trains with the second one. Here that is an error naming the key and both lines. A key a
merge (`<<: *anchor`) brings in may still be overridden: that is what merging is for.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from .errors import TransferError

_MERGE = "tag:yaml.org,2002:merge"


class DuplicateKey(yaml.YAMLError):
    """A key given twice in one mapping (lines are 1-based)."""

    def __init__(self, key: Any, first: int, second: int) -> None:
        super().__init__(f"key {key!r} appears twice in one mapping, at lines {first} and {second}")
        self.key, self.first, self.second = key, first, second


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping holding a key twice."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:   # an unhashable key: SafeLoader's own error says so
                    continue
                if first != key_node.start_mark.line + 1:
                    raise DuplicateKey(key, first, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | os.PathLike) -> Any:
    """The YAML file at `path` (safe subset); a key twice in one mapping, or text that is not YAML, is a
    TransferError naming the file (and the key and both lines); an unreadable file is an OSError."""
    path = Path(path)
    text = path.read_text()
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except DuplicateKey as exc:
        raise TransferError(f"{path}:{exc.second}: key {exc.key!r} is given twice in the same block (first at "
                            f"line {exc.first}); YAML would silently keep only the second: remove or merge "
                            "one") from None
    except yaml.YAMLError as exc:
        raise TransferError(f"{path}: not valid YAML: {exc}") from None
