#!/usr/bin/env bash
# Create or reuse the virtualenv and install Parley with the requested extras.
# Re-installs only when pyproject.toml or the extras changed (a stamp file records both).
set -euo pipefail
python="${1:-python3}"; venv="${2:-.venv}"; extras="${3:-edge,cloud,build,dev}"
cd "$(dirname "$0")/.."

# Debian packages: PortAudio for live audio (sounddevice), nftables for the packet-loss tests.
need=()
ldconfig -p 2>/dev/null | grep -q libportaudio.so.2 || need+=(libportaudio2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${need[*]}"
    (apt-get install -y -q "${need[@]}" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${need[@]}" >/dev/null 2>&1; }) \
      || echo "setup: could not install ${need[*]}; live audio / packet-loss tests will be skipped"
  else
    echo "setup: missing ${need[*]} (install with apt-get); live audio / packet-loss tests will be skipped"
  fi
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
stamp="$venv/.parley-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setup: installing parley[$extras] into $venv (the first run compiles llama.cpp, ~10 min on 2 cores)"
"$venv/bin/python" -m pip install -q --upgrade pip wheel
CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$venv/bin/python" -m pip install -q -e ".[${extras}]"
echo "$want" > "$stamp"
