#!/usr/bin/env bash
# Install what citybrain needs on a fresh Debian/Ubuntu machine. Idempotent and quiet when
# everything is already there.
#   scripts/install.sh          Python environment (.venv) for `citybrain up`
#   scripts/install.sh --test   plus the test services: clickhouse-server, Java + Maven (Kafka),
#                               Chromium + chromedriver (browser tests)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

pkgs=()
python_bin=""
for p in python3.11 python3.12 python3.13 python3; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    python_bin="$p"; break
  fi
done
if [ -z "$python_bin" ]; then
  pkgs+=(python3 python3-venv)
elif ! "$python_bin" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  pkgs+=(python3-venv)
fi
if [ "$want_test" = 1 ]; then
  [ -x /usr/sbin/clickhouse-server ] || command -v clickhouse-server >/dev/null 2>&1 || pkgs+=(clickhouse-server)
  command -v clickhouse-client >/dev/null 2>&1 || pkgs+=(clickhouse-client)
  command -v java >/dev/null 2>&1 || pkgs+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
  command -v chromium >/dev/null 2>&1 || pkgs+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || pkgs+=(chromium-driver)
  # a CJK font, so the 简体中文 screen renders in the browser tests' screenshots
  [ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || pkgs+=(fonts-wqy-microhei)
fi
if [ "${#pkgs[@]}" -gt 0 ]; then
  echo "[install] apt-get install ${pkgs[*]}"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null
fi
if [ -z "$python_bin" ]; then python_bin=python3; fi

if [ ! -x .venv/bin/python ]; then
  echo "[install] creating .venv with $($python_bin --version)"
  "$python_bin" -m venv .venv
fi
extras="."
[ "$want_test" = 1 ] && extras=".[dev]"
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)-$want_test"
if [ ! -f "$stamp" ]; then
  echo "[install] pip install -e $extras (a minute on a fresh machine)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e "$extras"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
