"""encode: pixels -> JPEG/PNG/WebP/TIFF/GIF bytes. May import the base modules only."""
