"""Optional analysis sections of a report (for example `transfer analyze`'s representation similarity).

A section is a function that gets the report directory (where report.json and the figures are) and
returns its markdown lines and the names of the figure files it wrote there; `transfer report` appends
each registered section to report.md, before the list of nets, and its figures to report.figures.
A module that provides one registers it at import: `sections.register(my_section)`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

Section = Callable[[Path], tuple[list[str], list[str]]]

_registered: list[Section] = []


def register(section: Section) -> Section:
    """Add a section (once); returns it, so this works as a decorator."""
    if section not in _registered:
        _registered.append(section)
    return section


def registered() -> tuple[Section, ...]:
    return tuple(_registered)


def run(sections: tuple[Section, ...], out_dir: Path) -> tuple[list[str], list[str]]:
    """Every section's lines (in order) and figure files."""
    lines: list[str] = []
    files: list[str] = []
    for section in sections:
        got_lines, got_files = section(out_dir)
        lines += list(got_lines)
        files += list(got_files)
    return lines, files
