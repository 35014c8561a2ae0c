"""A figure written as PNG and PDF, each to a temporary name renamed into place: a reader never sees
half a file. Shared by the report's figures and the analysis's."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .files import publish


def save_figure(fig: Any, out: Path, stem: str, dpi: int = 150) -> list[str]:
    """Write `fig` (a matplotlib Figure) as out/stem.png and out/stem.pdf, close it; the names written."""
    import matplotlib.pyplot as plt  # noqa: PLC0415 (slow to load; only drawing needs it)
    written = []
    for ext, kw in (("png", {"dpi": dpi}), ("pdf", {})):
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".{ext}", dir=out)
        os.close(fd)
        try:
            fig.savefig(tmp, format=ext, bbox_inches="tight", **kw)
            publish(tmp, out / f"{stem}.{ext}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        written.append(f"{stem}.{ext}")
    plt.close(fig)
    return written
