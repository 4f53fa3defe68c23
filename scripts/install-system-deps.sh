#!/usr/bin/env bash
# Installs the Debian packages the test suite and benchmarks need, when missing. Idempotent.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v xmlsec1 >/dev/null || need+=(xmlsec1)
[ -e /usr/include/xmlsec1/xmlsec/xmlsec.h ] || need+=(libxmlsec1-dev pkg-config libxml2-dev)
command -v chromium >/dev/null || need+=(chromium)
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing system packages: ${need[*]} (run as root, or install them: apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "installing system packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
