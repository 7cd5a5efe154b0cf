#!/usr/bin/env bash
# Renders the demo's landing page in headless Chromium and writes a PNG, to check how it reads.
# Installs Debian's chromium when missing. Usage: scripts/landing-screenshot.sh [OUT.png]
set -euo pipefail
out="$(realpath -m "${1:-landing.png}")"
cd "$(dirname "$0")/.."
venv="${VENV:-.venv}"

if ! command -v chromium >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing chromium (Debian package)" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
    || { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
fi

work="$(mktemp -d)"
port="$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$venv/bin/workflow-runs-exporter" demo --incident --web.listen-address "127.0.0.1:$port" \
  >"$work/demo.log" 2>&1 &
demo_pid=$!
cleanup() {
  kill "$demo_pid" 2>/dev/null || true
  wait "$demo_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Every source collected once, and a little time for recent failures to show.
for _ in $(seq 60); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
sleep "${SETTLE_SECONDS:-8}"

# As root Chromium needs --no-sandbox; the background-networking flags keep it off the (closed)
# network; a fresh profile directory keeps it from reusing anything.
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --hide-scrollbars --window-size=1100,1500 \
  --screenshot="$out" "http://127.0.0.1:$port/" >"$work/chromium.log" 2>&1 \
  || { cat "$work/chromium.log" >&2; exit 1; }
echo "landing page rendered to $out"
