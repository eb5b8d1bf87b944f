#!/usr/bin/env bash
# Installs the Debian packages the end-to-end tests run against, when missing:
# the reference registry (upstream), skopeo, the Docker engine, containerd (ctr)
# and podman (clients), nginx (reverse proxy), openssl (test certificates) and
# chromium (the dashboard test).
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

if ((${#missing[@]} == 0)); then
	exit 0
fi

echo "test setup: installing ${missing[*]}" >&2
sudo=()
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo=(sudo)
	else
		echo "test setup: need root (or sudo) to apt-get install ${missing[*]}" >&2
		exit 1
	fi
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q "${missing[@]}"
