#!/usr/bin/env bash
# Installs the Debian packages ShareWarden's data plane and tests use, only when missing:
# nfs-ganesha (+ its VFS backend) serves NFSv4; libnfs-utils is a real NFS client.
set -euo pipefail
need=()
command -v ganesha.nfsd >/dev/null 2>&1 || need+=(nfs-ganesha)
[ -e /usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so ] || ls /usr/lib/*/ganesha/libfsalvfs.so >/dev/null 2>&1 || need+=(nfs-ganesha-vfs)
command -v nfs-cat >/dev/null 2>&1 || need+=(libnfs-utils)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "deps: installing ${need[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "deps: installed ${need[*]}"
