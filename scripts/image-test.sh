#!/usr/bin/env bash
# Builds the real Dockerfile and runs the image, without a Docker engine: Debian's buildah builds
# and runs it (vfs storage, chroot isolation), on a stand-in for the official python image made
# with debootstrap (that image cannot be pulled everywhere). In the image, as its non-root user and
# with the config mounted read-only, it runs `workflow-runs-exporter check` against a simulator
# and a short `demo`. Not part of `make test`: the base alone takes about a minute.
#
# Usage: scripts/image-test.sh            (needs root; installs buildah and debootstrap if missing)
#        KEEP=1 scripts/image-test.sh     keeps the images and the base's root filesystem
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
base="localhost/python-standin:3.11-bookworm"
image="localhost/workflow-runs-exporter:image-test"
work="${WORK:-$(mktemp -d /tmp/workflow-runs-image-test.XXXXXX)}"
bah=(buildah --storage-driver vfs)

if [ "$(id -u)" -ne 0 ]; then
  echo "image-test needs root (buildah with chroot isolation, debootstrap)" >&2
  exit 1
fi
missing=()
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian packages)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi

containers=()
cleanup() {
  for c in "${containers[@]}"; do "${bah[@]}" rm "$c" >/dev/null 2>&1 || true; done
  if [ -z "${KEEP:-}" ]; then
    "${bah[@]}" rmi "$image" "$base" >/dev/null 2>&1 || true
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# 1. The stand-in base: Debian's python3 laid out as the official image has it (`python` on the
#    PATH, pip importable and removable, no "externally managed" marker), and this machine's CA
#    bundle so pip reaches PyPI through whatever TLS proxy the host trusts.
if ! "${bah[@]}" inspect --type image "$base" >/dev/null 2>&1; then
  rootfs="$work/rootfs"
  if [ ! -x "$rootfs/usr/bin/python3" ]; then
    echo "debootstrap: building the stand-in base (about a minute)" >&2
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
      || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  fi
  rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED
  ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  # Debian disables ensurepip for its system python; pip's own wheel (from python3-venv) installs
  # itself into /usr/local, where `pip uninstall` can remove it again as the Dockerfile does.
  chroot "$rootfs" sh -c 'w=$(ls /usr/share/python-wheels/pip-*.whl) &&
    python3 "$w/pip" install --no-index --no-cache-dir --quiet --root-user-action=ignore "$w"'
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  c=$("${bah[@]}" from scratch)
  containers+=("$c")
  cp -a "$rootfs/." "$("${bah[@]}" mount "$c")/"
  "${bah[@]}" umount "$c" >/dev/null
  "${bah[@]}" config --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt --cmd python3 "$c"
  "${bah[@]}" commit --quiet "$c" "$base" >/dev/null
fi

# 2. The real Dockerfile on it.
echo "buildah: building the Dockerfile on $base" >&2
"${bah[@]}" --isolation chroot bud --quiet --layers=false \
  --build-arg PYTHON_IMAGE="$base" -t "$image" -f Dockerfile . >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log" >&2; exit 1; }

# 3. Run it as its own user (10001), config read-only, against a simulator on the host's loopback
#    (chroot isolation shares the host's network).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key="sim-image-test-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
"$repo/.venv/bin/workflow-runs-exporter" simulate --provider plextera --port "$port" \
  --api-key "$key" --speed 30 >"$work/simulator.log" 2>&1 &
sim_pid=$!
trap 'kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; cleanup' EXIT
mkdir -p "$work/config"
cat >"$work/config/config.yaml" <<EOF
state_path: /var/lib/workflow-runs-exporter/state.db
sources:
  - name: plextera-image-test
    provider: plextera
    base_url: http://127.0.0.1:$port
    api_key: $key
EOF
chmod 0644 "$work/config/config.yaml"
for _ in $(seq 50); do
  grep -q "simulator at" "$work/simulator.log" && break
  sleep 0.2
done
base_url=$(sed -n 's/.*simulator at \(http[^ ]*\).*/\1/p' "$work/simulator.log")
sed -i "s|base_url: .*|base_url: $base_url|" "$work/config/config.yaml"

c=$("${bah[@]}" from "$image")
containers+=("$c")
run=("${bah[@]}" --isolation chroot run
  --volume "$work/config:/etc/workflow-runs-exporter:ro" "$c" --)

echo "image: id inside the container" >&2
"${run[@]}" id | tee "$work/id.txt"
grep -q "uid=10001" "$work/id.txt" || { echo "not running as uid 10001" >&2; exit 1; }

echo "image: workflow-runs-exporter check (config read-only)" >&2
# The report is on stdout; its log lines (one per failed run) go to a file, shown on failure.
"${run[@]}" workflow-runs-exporter check --config.file /etc/workflow-runs-exporter/config.yaml \
  2>"$work/check.log" || { cat "$work/check.log" >&2; exit 1; }

echo "image: a short demo" >&2
"${run[@]}" timeout --signal=TERM 15 workflow-runs-exporter demo --web.listen-address 127.0.0.1:0 \
  >"$work/demo.log" 2>&1 || status=$?
# 124: `timeout` stopped it, as intended; the demo itself must have served and summarised.
if [ "${status:-0}" -ne 124 ] && [ "${status:-0}" -ne 0 ]; then
  cat "$work/demo.log" >&2
  exit 1
fi
grep -q "finished (+" "$work/demo.log" || { cat "$work/demo.log" >&2; exit 1; }
grep "finished (+" "$work/demo.log" | head -4
echo "image-test: passed" >&2
