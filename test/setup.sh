#!/usr/bin/env bash
# Installs the Debian packages the end-to-end tests run against, when missing:
# the reference registry (upstream), skopeo, the Docker engine, containerd (ctr)
# and podman (clients), nginx (reverse proxy), openssl (test certificates),
# chromium (the dashboard test), a single-node Ceph (monitor, OSD, radosgw: the
# S3 blob store), PostgreSQL 15 (shared metadata), mmdebstrap (the container
# image test's base images) and systemd (systemd-analyze verify of the unit).
set -euo pipefail

missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v containerd >/dev/null 2>&1 || missing+=(containerd)
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[[ -x /usr/lib/postgresql/15/bin/postgres ]] || missing+=(postgresql-15)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)

# Ceph without its recommends (they pull in the whole manager and dashboard stack).
ceph=()
command -v ceph-mon >/dev/null 2>&1 || ceph+=(ceph-mon)
command -v ceph-osd >/dev/null 2>&1 || ceph+=(ceph-osd)
command -v radosgw >/dev/null 2>&1 || ceph+=(radosgw)
command -v ceph >/dev/null 2>&1 || ceph+=(ceph-common)

if ((${#missing[@]} == 0 && ${#ceph[@]} == 0)); then
	exit 0
fi

echo "test setup: installing ${missing[*]} ${ceph[*]}" >&2
sudo=()
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo=(sudo)
	else
		echo "test setup: need root (or sudo) to apt-get install ${missing[*]} ${ceph[*]}" >&2
		exit 1
	fi
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
if ((${#missing[@]} > 0)); then
	"${sudo[@]}" apt-get install -y -q "${missing[@]}"
fi
if ((${#ceph[@]} > 0)); then
	"${sudo[@]}" apt-get install -y -q --no-install-recommends "${ceph[@]}"
fi
