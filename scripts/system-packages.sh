#!/usr/bin/env bash
# Install the Debian packages pyiip's tests, demo and benchmarks use, only those missing.
# Usage: scripts/system-packages.sh [run|test|bench]
# Another apt-get or upgrade holding the dpkg lock is waited for, LOCK_TIMEOUT seconds at most (300),
# saying which process holds it (scripts/wait_for_dpkg_lock.py). A daemon that its package's install
# started (lighttpd, nginx, apache2, memcached) is stopped again, and named; running ones are left alone.
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
LOCK_TIMEOUT=${LOCK_TIMEOUT:-300}   # seconds to wait for another apt-get or upgrade to finish
services=(lighttpd nginx apache2 memcached)
running() { command -v service >/dev/null 2>&1 && $SUDO service "$1" status >/dev/null 2>&1; }
before=" "; for s in "${services[@]}"; do running "$s" && before+="$s "; done
echo "installing Debian packages: ${packages[*]}" >&2
apt_get() {  # wait for the dpkg/apt locks (bounded, saying who holds them), then let apt wait out any race too
  $SUDO python3 "$(dirname "$0")/wait_for_dpkg_lock.py" --timeout "$LOCK_TIMEOUT"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout="$LOCK_TIMEOUT" "$@"
}
apt_get update -qq
apt_get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
# Debian starts a daemon when its package is installed: those just started would hold port 80 and
# 11211 while the tests run their own copies on free ports. Services that ran before stay as they were.
stopped=()
for s in "${services[@]}"; do
  if [[ $before != *" $s "* ]] && running "$s"; then
    $SUDO service "$s" stop >/dev/null 2>&1 && stopped+=("$s")
  fi
done
if [ ${#stopped[@]} -gt 0 ]; then
  echo "stopped ${stopped[*]}: started by the install just now; the tests run their own on free ports" >&2
fi
