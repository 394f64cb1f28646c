"""pyiip: an IIP (with iipsrv-astro extensions) and IIIF image server for very large images."""

__version__ = "0.1.0"
