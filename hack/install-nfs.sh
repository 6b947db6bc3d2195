#!/usr/bin/env bash
# Installs what the real NFS data-plane tests and the demo need: nfs-ganesha with its VFS backend
# (the server the nfs-server agent supervises) and libnfs-utils (nfs-cp, nfs-ls, nfs-cat: a
# userspace NFSv4 client that needs no kernel mount). Idempotent: it does nothing when every
# package is already installed, and runs `apt-get update` only when a package cannot be found
# in the current lists. Needs root (or sudo) and a Debian-family system.
set -euo pipefail

pkgs=(nfs-ganesha nfs-ganesha-vfs libnfs-utils)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-nfs: ${pkgs[*]} already installed"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-nfs: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
if ! command -v apt-get >/dev/null; then
  echo "install-nfs: apt-get not found; install ${missing[*]} by hand" >&2
  exit 1
fi

# Only refresh the package lists when one of the packages has no install candidate in them.
for p in "${missing[@]}"; do
  cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
    echo "install-nfs: refreshing package lists"
    "${sudo[@]}" apt-get update -qq
    break
  fi
done

echo "install-nfs: installing ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
