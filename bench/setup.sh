#!/usr/bin/env bash
# Installs the Debian packages `npm run bench` needs, when missing: the
# reference registry (upstream and proxy), nginx (the static ceiling), wrk
# (manifest requests/s), curl, openssl (token server keys) and taskset.
set -euo pipefail

missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)

if ((${#missing[@]} == 0)); then
	exit 0
fi

echo "bench setup: installing ${missing[*]}" >&2
sudo=()
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo=(sudo)
	else
		echo "bench setup: need root (or sudo) to apt-get install ${missing[*]}" >&2
		exit 1
	fi
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
