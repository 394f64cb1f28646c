"""read: open images and read the pixels of one level (TIFF, libvips, remote byte sources and their block cache).

Defines Resolved, the input it opens, and TileStore, the interface a tile cache implements. May import parse/
and the base modules; never resolve/, cache/ (the cache implements read's interfaces), respond/ or server/.
"""
