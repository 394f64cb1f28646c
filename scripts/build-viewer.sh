#!/usr/bin/env bash
# Build the viewer's third-party browser code: `npm ci` in viewer/ (versions pinned by its
# package-lock.json), then copy Leaflet's dist files into src/pyiip/static/vendor/leaflet/,
# which the package serves at /static/vendor/leaflet/. Nothing is fetched at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v npm >/dev/null 2>&1 || scripts/system-packages.sh run
(cd viewer && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
dist=viewer/node_modules/leaflet/dist
dest=src/pyiip/static/vendor/leaflet
rm -rf "$dest.partial"
mkdir -p "$dest.partial/images"
cp "$dist/leaflet.js" "$dist/leaflet.css" "$dest.partial/"
cp "$dist"/images/*.png "$dest.partial/images/"
cp viewer/node_modules/leaflet/LICENSE "$dest.partial/LICENSE.txt"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "viewer: $(du -sh "$dest" | cut -f1) of Leaflet $(node -p "require('./viewer/node_modules/leaflet/package.json').version") in $dest" >&2
