"""pyiip: an IIP (with iipsrv-astro extensions) and IIIF image server for very large images."""

import os

from pyiip.compiled import use_sources

__version__ = "0.1.0"

# The compiled modules run from their Python source with PYIIP_PURE=1, or when stale (pyiip.compiled).
use_sources(always=bool(os.environ.get("PYIIP_PURE")))
