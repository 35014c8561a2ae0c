"""transfer: a Caffe-faithful reproduction pipeline for Yosinski et al. 2014."""
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
__version__ = "0.1.0"
