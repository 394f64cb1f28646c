#!/usr/bin/env bash
# Install the Debian packages pyiip's tests, demo and benchmarks use, only those missing.
# Usage: scripts/system-packages.sh [run|test|bench]
set -euo pipefail
what=${1:-test}
packages=()
need() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || packages+=("$1"); }

python3 -m venv --help >/dev/null 2>&1 && python3 -c "import ensurepip" 2>/dev/null || need python3-venv
command -v npm >/dev/null 2>&1 || need npm   # builds the viewer (Leaflet) at install time
if [ "$what" = test ] || [ "$what" = bench ]; then
  for p in lighttpd memcached nginx-light spawn-fcgi apache2 libapache2-mod-fcgid libmagic1 curl \
           chromium chromium-driver; do need "$p"; done
fi
if [ "$what" = bench ]; then
  for p in iipimage-server wrk; do need "$p"; done
fi
[ ${#packages[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing Debian packages: ${packages[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
# Packaged daemons must not hold the ports or sockets the tests use.
for service in lighttpd nginx apache2 memcached; do
  if command -v service >/dev/null 2>&1; then $SUDO service "$service" stop >/dev/null 2>&1 || true; fi
done
