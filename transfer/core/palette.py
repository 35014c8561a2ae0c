"""The papers' look, shared by every figure (the report's and the analysis's): markers and colours."""
from __future__ import annotations

# The paper's look: white base circles, dark/light blue selffer dots, dark/light red transfer diamonds.
STYLE: dict[str, dict] = {
    "baseB": dict(marker="o", mfc="white", mec="black", color="black", dx=0.0),
    "BnB": dict(marker="o", mfc="#1f3a93", mec="#1f3a93", color="#1f3a93", dx=-0.21),
    "BnB+": dict(marker="o", mfc="#8ab8ee", mec="#5b8fd0", color="#6fa3e3", dx=-0.07),
    "AnB": dict(marker="D", mfc="#a01010", mec="#a01010", color="#a01010", dx=0.07),
    "AnB+": dict(marker="D", mfc="#f4a0a0", mec="#e07070", color="#e88080", dx=0.21),
}
NATMAN = dict(marker="h", mfc="#f0901a", mec="#b06000", color="#b06000")
RANDOM = dict(marker="s", mfc="#3a9a3a", mec="#206020", color="#3a9a3a")
