"""pyiip: an IIP (with iipsrv-astro extensions) and IIIF image server for very large images."""

import os

__version__ = "0.1.0"

if os.environ.get("PYIIP_PURE"):  # the compiled modules run from their Python source (pyiip.compiled)
    from pyiip.compiled import use_sources

    use_sources()
