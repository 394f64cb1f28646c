"""tools: offline commands (convert and pyramid, demo data, cache warming). May import anything but server/ and cli."""
