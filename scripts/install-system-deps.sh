#!/usr/bin/env bash
# Installs the Debian packages ToolMesh's system tests and demo use:
#   docker.io          a real Docker engine (dockerd is started by the tests on its own socket)
#   busybox-static     the root filesystem of the test image (made with `docker import`)
#   mosquitto          an external broker for interop tests
#   mosquitto-clients  mosquitto_pub / mosquitto_sub, the third-party client in tests
#   openssl            test CA and broker certificates for the TLS tests
#   gstreamer1.0-*     gst-launch-1.0 / gst-inspect-1.0 and encoders for the robot camera and encoder-board packs
#   chromium           headless browser for the editor and dashboard tests (driven by playwright-core)
# Run as root (or with sudo). Safe to run again.
#
# `scripts/install-system-deps.sh --check [PKG...]` installs nothing: it prints the packages of the
# list above (or the PKGs given) that are not installed, on one line separated by spaces (an empty
# line when none is missing), and exits 0; exit 2 when dpkg-query is missing (not a Debian system).
# The test setup (test/support/prerequisites.ts) uses it to print one line per test run.
set -euo pipefail
PKGS=(docker.io busybox-static mosquitto mosquitto-clients openssl ca-certificates
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly chromium)
check=false
if [ "${1:-}" = "--check" ]; then
  check=true
  shift
  [ $# -eq 0 ] || PKGS=("$@")
  command -v dpkg-query >/dev/null || { echo "dpkg-query not found: not a Debian system" >&2; exit 2; }
fi
# one dpkg-query for all (unknown names go to stderr and make it exit 1)
installed=" $(dpkg-query -W -f='${Package} ${Status}\n' "${PKGS[@]}" 2>/dev/null | sed -n 's/ install ok installed$//p' | tr '\n' ' ' || true) "
missing=()
for p in "${PKGS[@]}"; do
  [[ "$installed" == *" $p "* ]] || missing+=("$p")
done
if $check; then
  echo "${missing[*]}"
  exit 0
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "system deps: all installed (${PKGS[*]})"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The Debian package enables the system-wide mosquitto service where systemd runs; the tests
# start their own on free ports and need nothing from it.
echo "system deps: installed ${missing[*]}"
