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
set -euo pipefail
PKGS=(docker.io busybox-static mosquitto mosquitto-clients openssl ca-certificates
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly chromium)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
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
