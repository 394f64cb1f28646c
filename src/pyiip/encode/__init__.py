"""encode: pixels -> JPEG/PNG/WebP/TIFF/AVIF bytes. May import the base modules only."""
