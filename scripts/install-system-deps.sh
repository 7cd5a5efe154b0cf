#!/usr/bin/env bash
# Installs the real components the tests run (promtool, Prometheus, Alertmanager, VictoriaMetrics
# with vmalert) when missing.
# --demo: only Prometheus and Alertmanager (what `make demo-stack` needs).
set -euo pipefail
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
if [ "${1:-}" != "--demo" ]; then
  # The single-node server and vmalert, run in place of Prometheus by one system test.
  command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
  command -v vmalert >/dev/null 2>&1 || missing+=(victoria-metrics)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "installing ${missing[*]} (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2068
$sudo apt-get install -y -qq --no-install-recommends $(printf '%s\n' ${missing[@]} | sort -u) >/dev/null
