#!/usr/bin/env bash
# images/build.sh: build local Docker images that follow the public.ecr.aws/lambda
# contract, without any container registry. See images/README.md.
#
#   images/build.sh [--force] [python|provided|node|all]...
#
# Images:
#   ruststack/lambda-python:3.11     Debian bookworm + python3.11 + awslambdaric + boto3
#   ruststack/lambda-provided:al2023 Debian bookworm (glibc 2.36) for custom runtimes
#   ruststack/lambda-nodejs:18       Debian bookworm + Node.js 18 + RustStack's Node
#                                    runtime client (runtime-api/node/bootstrap.js)
#
# Each image carries the sha256 of its recipe (this script, the Node runtime
# client, plus the host CA bundle that goes into it) in the label org.ruststack.recipe. An image whose
# label already matches is not rebuilt, so a re-run takes about a second.
# The debootstrap rootfs of each image is cached as a tarball under
# $RUSTSTACK_IMAGE_CACHE (default $XDG_CACHE_HOME/ruststack-images, else
# /var/cache/ruststack-images), together with the downloaded .debs and pip's cache.
#
# Needs: root, a running Docker engine, Debian's package mirror, PyPI.
set -euo pipefail
umask 022

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")

# ---------------------------------------------------------------- settings
PYTHON_TAG=${RUSTSTACK_PYTHON_IMAGE:-ruststack/lambda-python:3.11}
PROVIDED_TAG=${RUSTSTACK_PROVIDED_IMAGE:-ruststack/lambda-provided:al2023}
NODE_TAG=${RUSTSTACK_NODE_IMAGE:-ruststack/lambda-nodejs:18}
# Node.js is Debian's (bookworm ships 18); the runtime client is RustStack's own, since
# AWS's (aws-lambda-nodejs-runtime-interface-client) comes from npm with a native addon.
NODE_MAJOR=18
NODE_PACKAGES=(nodejs ca-certificates)
NODE_CLIENT=$(dirname "$SCRIPT_PATH")/../runtime-api/node/bootstrap.js
DEBIAN_SUITE=bookworm          # python3 is 3.11 there, matching the cp311 wheels below
DEBIAN_MIRROR=${RUSTSTACK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# One debootstrap serves both images: the python rootfs is tarred, then the
# python packages are purged and the provided rootfs is tarred.
# curl: the bootstrap in AWS's custom-runtime tutorial uses it.
ROOTFS_PACKAGES=(python3 ca-certificates curl)
# What python3 brings in on bookworm minbase and nothing else needs.
PYTHON_ONLY_PACKAGES=(python3 python3-minimal python3.11 python3.11-minimal libpython3-stdlib
  libpython3.11-minimal libpython3.11-stdlib media-types libexpat1 libncursesw6 libnsl2
  libreadline8 readline-common libsqlite3-0 libtirpc3 libtirpc-common)
AWSLAMBDARIC_VERSION=4.2.2
BOTO3_VERSION=1.44.8
PY_VER=3.11
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

if [[ -n "${RUSTSTACK_IMAGE_CACHE:-}" ]]; then
  CACHE_DIR=$RUSTSTACK_IMAGE_CACHE
elif [[ -n "${XDG_CACHE_HOME:-}" ]]; then
  CACHE_DIR=$XDG_CACHE_HOME/ruststack-images
else
  CACHE_DIR=/var/cache/ruststack-images
fi

# ---------------------------------------------------------------- helpers
START_TS=$(date +%s)
log() { printf '[images %4ss] %s\n' "$(($(date +%s) - START_TS))" "$*" >&2; }
die() { printf '[images] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,20p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

TMP_DIRS=()
cleanup() {
  local d m
  for d in "${TMP_DIRS[@]}"; do
    [[ -d "$d" ]] || continue
    # debootstrap mounts /proc and /sys inside the target; never rm through a mount.
    awk -v p="$d/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$d"
  done
}
trap cleanup EXIT

# new_tmp: make a scratch dir next to the cache (same filesystem) in $NEW_TMP.
# Not a $(...) helper: the list of dirs to clean up must live in this shell.
NEW_TMP=
new_tmp() {
  mkdir -p "$CACHE_DIR/tmp"
  NEW_TMP=$(mktemp -d "$CACHE_DIR/tmp/build.XXXXXX")
  TMP_DIRS+=("$NEW_TMP")
}

# run_logged LOGFILE CMD...: run quietly, show the log's tail if it fails.
run_logged() {
  local logfile=$1; shift
  if ! "$@" >"$logfile" 2>&1; then
    echo "---- last lines of $logfile ----" >&2
    tail -n 40 "$logfile" >&2 || true
    die "command failed: $*"
  fi
}

need_root() {
  [[ $EUID -eq 0 ]] || die "building images needs root (debootstrap, chroot, file ownership); re-run with sudo"
}

ensure_debootstrap() {
  if command -v debootstrap >/dev/null && command -v gpgv >/dev/null &&
     [[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]]; then
    return
  fi
  log "installing debootstrap with apt-get"
  run_logged "$CACHE_DIR/apt-get.log" apt-get update
  DEBIAN_FRONTEND=noninteractive run_logged "$CACHE_DIR/apt-get.log" \
    apt-get install -y --no-install-recommends debootstrap debian-archive-keyring gpgv wget
}

# The pip that installs the RIC into the image. Any CPython's pip will do: the
# wheels are chosen for the image's interpreter (cp311, manylinux x86_64), not
# for the host's.
host_pip() {
  if python3 -m pip --version >/dev/null 2>&1; then
    python3 -m pip "$@"
  else
    log "python3 -m pip not found: installing python3-pip with apt-get"
    run_logged "$CACHE_DIR/apt-get.log" apt-get update
    DEBIAN_FRONTEND=noninteractive run_logged "$CACHE_DIR/apt-get.log" \
      apt-get install -y --no-install-recommends python3-pip
    python3 -m pip "$@"
  fi
}

# ------------------------------------------------------------ rootfs cache
# strip_rootfs DIR: drop what a container never needs (the same things Debian's
# -slim images drop) and keep dpkg from bringing them back in derived images.
strip_rootfs() {
  local r=$1
  rm -f "$r"/etc/dpkg/dpkg.cfg.d/ruststack-unsafe-io
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin \
         "$r"/var/lib/apt/lists/* "$r"/var/log/apt/* "$r"/var/cache/debconf/*-old \
         "$r"/var/lib/dpkg/*-old "$r"/usr/share/man/* "$r"/usr/share/info/* \
         "$r"/usr/share/lintian "$r"/usr/share/linda "$r"/debootstrap
  find "$r"/var/log -type f -delete
  find "$r"/usr/share/doc -mindepth 1 -type f ! -name copyright -delete
  find "$r"/usr/share/doc -mindepth 1 -type d -empty -delete
  find "$r"/usr/share/locale -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
  mkdir -p "$r"/var/lib/apt/lists/partial
  cat >"$r"/etc/dpkg/dpkg.cfg.d/ruststack-excludes <<'EOF'
# ruststack images: keep derived images as small as the base (like Debian -slim)
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  # Docker provides /dev, /etc/hostname, /etc/hosts and /etc/resolv.conf at run time;
  # do not ship the build host's.
  find "$r"/dev -mindepth 1 -delete
  : >"$r"/etc/resolv.conf
  echo localhost >"$r"/etc/hostname
  rm -f "$r"/etc/machine-id "$r"/var/lib/dbus/machine-id
}

# make_rootfs DIR PACKAGE...: debootstrap a minbase bookworm into DIR.
# Two stages, with dpkg's fsyncs off in the second: about 3x faster than a
# plain debootstrap on this kind of machine.
make_rootfs() {
  local dir=$1; shift
  local includes
  includes=$(IFS=,; echo "$*")
  mkdir -p "$CACHE_DIR/debs"
  run_logged "$dir.debootstrap1.log" debootstrap --foreign --variant=minbase \
    --include="$includes" --cache-dir="$CACHE_DIR/debs" \
    "$DEBIAN_SUITE" "$dir" "$DEBIAN_MIRROR"
  mkdir -p "$dir/etc/dpkg/dpkg.cfg.d"
  echo force-unsafe-io >"$dir/etc/dpkg/dpkg.cfg.d/ruststack-unsafe-io"
  run_logged "$dir.debootstrap2.log" env -i HOME=/root LANG=C.UTF-8 \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    chroot "$dir" /debootstrap/debootstrap --second-stage
}

# purge_python DIR: remove python3 and what only it needed from the rootfs.
purge_python() {
  local dir=$1 installed=() p
  for p in "${PYTHON_ONLY_PACKAGES[@]}"; do
    # shellcheck disable=SC2016  # ${Status} is dpkg-query's, not ours
    if [[ "$(chroot "$dir" dpkg-query -W -f '${Status}' "$p" 2>/dev/null || true)" == "install ok installed" ]]; then
      installed+=("$p")
    fi
  done
  run_logged "$dir.purge.log" env -i HOME=/root LANG=C.UTF-8 \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    chroot "$dir" dpkg --purge "${installed[@]}"
  [[ ! -e "$dir/usr/bin/python3" ]] || die "python3 is still in the provided rootfs"
  [[ -z "$(chroot "$dir" dpkg --audit)" ]] || die "dpkg --audit reports problems after purging python"
}

# rootfs_tarball python|provided: set $ROOTFS_TARBALL to the cached rootfs
# tarball of that image, building both first if needed. The key covers the
# package lists and the code that makes them.
ROOTFS_TARBALL=
rootfs_tarball() {
  local name=$1
  local key arch tmp out_python out_provided
  arch=$(dpkg --print-architecture)
  key=$( { echo "$DEBIAN_SUITE $arch minbase ${ROOTFS_PACKAGES[*]} - ${PYTHON_ONLY_PACKAGES[*]}"
           declare -f make_rootfs strip_rootfs purge_python rootfs_tarball; } | sha256sum | cut -c1-16)
  out_python="$CACHE_DIR/rootfs-python-$DEBIAN_SUITE-$arch-$key.tar"
  out_provided="$CACHE_DIR/rootfs-provided-$DEBIAN_SUITE-$arch-$key.tar"
  ROOTFS_TARBALL="$CACHE_DIR/rootfs-$name-$DEBIAN_SUITE-$arch-$key.tar"
  if [[ -s "$out_python" && -s "$out_provided" ]]; then
    log "rootfs $name: cached ($ROOTFS_TARBALL)"
    find "$CACHE_DIR" -maxdepth 1 -name "rootfs-*.tar" ! -path "$out_python" ! -path "$out_provided" -delete
    return
  fi
  need_root
  ensure_debootstrap
  new_tmp; tmp=$NEW_TMP
  log "rootfs: debootstrap --variant=minbase $DEBIAN_SUITE + ${ROOTFS_PACKAGES[*]} (about 1.5 min on an idle machine)"
  make_rootfs "$tmp/rootfs" "${ROOTFS_PACKAGES[@]}"
  strip_rootfs "$tmp/rootfs"
  log "rootfs python: $(du -sh "$tmp/rootfs" | cut -f1) after stripping; writing tarball"
  tar --numeric-owner -C "$tmp/rootfs" -cf "$tmp/python.tar" .
  log "rootfs provided: purging python"
  purge_python "$tmp/rootfs"
  strip_rootfs "$tmp/rootfs"
  log "rootfs provided: $(du -sh "$tmp/rootfs" | cut -f1); writing tarball"
  tar --numeric-owner -C "$tmp/rootfs" -cf "$tmp/provided.tar" .
  mv "$tmp/python.tar" "$out_python"
  mv "$tmp/provided.tar" "$out_provided"
  # Drop tarballs of older recipes.
  find "$CACHE_DIR" -maxdepth 1 -name "rootfs-*.tar" ! -path "$out_python" ! -path "$out_provided" -delete
  rm -rf --one-file-system "$tmp"
}

# node_rootfs_tarball: set $ROOTFS_TARBALL to the cached rootfs of the node image
# (its own debootstrap: minbase + nodejs), building it first if needed.
node_rootfs_tarball() {
  local key arch tmp out
  arch=$(dpkg --print-architecture)
  key=$( { echo "$DEBIAN_SUITE $arch minbase ${NODE_PACKAGES[*]}"
           declare -f make_rootfs strip_rootfs node_rootfs_tarball; } | sha256sum | cut -c1-16)
  out="$CACHE_DIR/noderootfs-$DEBIAN_SUITE-$arch-$key.tar"
  ROOTFS_TARBALL=$out
  if [[ -s "$out" ]]; then
    log "rootfs node: cached ($out)"
    find "$CACHE_DIR" -maxdepth 1 -name "noderootfs-*.tar" ! -path "$out" -delete
    return
  fi
  need_root
  ensure_debootstrap
  new_tmp; tmp=$NEW_TMP
  log "rootfs node: debootstrap --variant=minbase $DEBIAN_SUITE + ${NODE_PACKAGES[*]} (about 1.5 min on an idle machine)"
  make_rootfs "$tmp/rootfs" "${NODE_PACKAGES[@]}"
  strip_rootfs "$tmp/rootfs"
  log "rootfs node: $(du -sh "$tmp/rootfs" | cut -f1) after stripping; writing tarball"
  tar --numeric-owner -C "$tmp/rootfs" -cf "$tmp/node.tar" .
  mv "$tmp/node.tar" "$out"
  find "$CACHE_DIR" -maxdepth 1 -name "noderootfs-*.tar" ! -path "$out" -delete
  rm -rf --one-file-system "$tmp"
}

# ------------------------------------------------------- shared image parts
# common_layout OVERLAY BASE_TAR: the Lambda directory layout, the locale alias
# and the CA bundle, written into OVERLAY (files that go on top of BASE_TAR).
common_layout() {
  local r=$1 base=$2
  mkdir -p "$r"/var/task "$r"/var/runtime "$r"/var/lang/bin "$r"/var/lang/lib \
           "$r"/opt "$r"/usr/local/bin "$r"/usr/lib/locale "$r"/etc/ssl/certs
  # LANG=en_US.UTF-8 as in the AWS images: alias it to glibc's built-in C.utf8
  # (no 'locales' package, no localedef needed).
  ln -sfn C.utf8 "$r"/usr/lib/locale/en_US.utf8
  # Merge the host's CA bundle (it may hold a TLS-intercepting proxy's CA) into
  # the image's, without duplicates.
  local bundle="$r/etc/ssl/certs/ca-certificates.crt"
  tar -xOf "$base" ./etc/ssl/certs/ca-certificates.crt >"$bundle"
  if [[ -s "$HOST_CA_BUNDLE" ]]; then
    cat "$bundle" "$HOST_CA_BUNDLE" | awk '
      /-----BEGIN CERTIFICATE-----/ { pem = ""; inside = 1 }
      inside { pem = pem $0 "\n" }
      /-----END CERTIFICATE-----/ { inside = 0; if (!(pem in seen)) { seen[pem] = 1; printf "%s", pem } }
    ' >"$bundle.new"
    mv "$bundle.new" "$bundle"
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
      mkdir -p "$r"/usr/local/share/ca-certificates
      cp /usr/local/share/ca-certificates/*.crt "$r"/usr/local/share/ca-certificates/
    fi
  fi
}

# The RIE is not bundled. Both images print this when AWS_LAMBDA_RUNTIME_API is empty.
# shellcheck disable=SC2016  # expanded by the entrypoint script, not here
ENTRYPOINT_NO_RIE='  if [ -x /usr/local/bin/aws-lambda-rie ]; then
    exec /usr/local/bin/aws-lambda-rie "$RUNTIME_ENTRYPOINT"
  fi
  echo "AWS_LAMBDA_RUNTIME_API is not set, and this image does not bundle the Runtime Interface Emulator (/usr/local/bin/aws-lambda-rie)." 1>&2
  echo "Run it from RustStack (--lambda-executor docker), or set AWS_LAMBDA_RUNTIME_API=host:port of a Lambda Runtime API." 1>&2
  exit 1'

# write_runtime_entrypoint DIR IMAGE: /lambda-entrypoint.sh of an image whose runtime starts
# from /var/runtime/bootstrap (the python and nodejs images).
write_runtime_entrypoint() {
  local r=$1 image=$2
  cat >"$r"/lambda-entrypoint.sh <<EOF
#!/bin/sh
# /lambda-entrypoint.sh of ruststack/$image: the public.ecr.aws/lambda contract.
# The one argument (the image CMD) is the handler.
if [ \$# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="\$1"

RUNTIME_ENTRYPOINT=/var/runtime/bootstrap
if [ -z "\${AWS_LAMBDA_RUNTIME_API:-}" ]; then
$ENTRYPOINT_NO_RIE
fi
exec "\$RUNTIME_ENTRYPOINT"
EOF
}

# The end of a runtime's /var/runtime/bootstrap: run RUNTIME_CMD, through the script named
# by AWS_LAMBDA_EXEC_WRAPPER if there is one (127: it does not exist, 126: not executable),
# as the AWS images' bootstrap scripts do.
# shellcheck disable=SC2016  # expanded by the bootstrap script, not here
EXEC_WRAPPER='if [ -z "${AWS_LAMBDA_EXEC_WRAPPER:-}" ]; then
  exec "${RUNTIME_CMD[@]}"
fi
wrapper="$AWS_LAMBDA_EXEC_WRAPPER"
if [ ! -f "$wrapper" ]; then
  echo "$wrapper: does not exist"
  exit 127
fi
if [ ! -x "$wrapper" ]; then
  echo "$wrapper: is not an executable"
  exit 126
fi
exec -- "$wrapper" "${RUNTIME_CMD[@]}"'

write_python_files() {
  local r=$1
  write_runtime_entrypoint "$r" lambda-python

  cat >"$r"/var/runtime/bootstrap <<EOF
#!/bin/bash
# /var/runtime/bootstrap of ruststack/lambda-python:$PY_VER: starts awslambdaric the
# way the public.ecr.aws/lambda/python image does, honouring AWS_LAMBDA_EXEC_WRAPPER.
export AWS_EXECUTION_ENV="\${AWS_EXECUTION_ENV:-AWS_Lambda_python$PY_VER}"

RUNTIME_CMD=(/var/lang/bin/python$PY_VER /var/runtime/bootstrap.py)
$EXEC_WRAPPER
EOF

  cat >"$r"/var/runtime/bootstrap.py <<'EOF'
"""/var/runtime/bootstrap.py of ruststack/lambda-python.

Sets up sys.path the way the public.ecr.aws/lambda/python images do, then runs
awslambdaric (installed next to this file, in /var/runtime):
  sys.path = [LAMBDA_TASK_ROOT, /opt/python/lib/pythonX.Y/site-packages,
              /opt/python, /var/runtime, <stdlib>...]
The /opt paths are added only when PYTHONPATH is unset; each of these
directories also gets site.addsitedir so .pth files in them work. Child
processes get PYTHONPATH=LAMBDA_RUNTIME_DIR.
"""
import os
import site
import sys

from awslambdaric import __main__ as awslambdaric_main


def _layer_dirs():
    version = "{}.{}".format(sys.version_info.major, sys.version_info.minor)
    return ["/opt/python/lib/python{}/site-packages".format(version), "/opt/python"]


def main():
    task_root = os.environ.setdefault("LAMBDA_TASK_ROOT", "/var/task")
    runtime_dir = os.environ.setdefault("LAMBDA_RUNTIME_DIR", "/var/runtime")
    pythonpath_set = "PYTHONPATH" in os.environ

    front = [task_root]
    if not pythonpath_set:
        front += _layer_dirs()
    for path in reversed(front):
        sys.path.insert(0, path)
    for path in front:
        site.addsitedir(path)
    if not pythonpath_set:
        os.environ["PYTHONPATH"] = runtime_dir

    awslambdaric_main.main([task_root, os.environ["_HANDLER"]])


if __name__ == "__main__":
    main()
EOF
  chmod 0755 "$r"/lambda-entrypoint.sh "$r"/var/runtime/bootstrap
  chmod 0644 "$r"/var/runtime/bootstrap.py

  # /var/lang/bin/pythonX.Y as in the AWS images (PATH puts /var/lang/bin first).
  ln -sfn /usr/bin/python$PY_VER "$r"/var/lang/bin/python$PY_VER
  ln -sfn python$PY_VER "$r"/var/lang/bin/python3
  ln -sfn python$PY_VER "$r"/var/lang/bin/python
}

write_provided_files() {
  local r=$1
  cat >"$r"/lambda-entrypoint.sh <<EOF
#!/bin/sh
# /lambda-entrypoint.sh of ruststack/lambda-provided: the public.ecr.aws/lambda contract
# for OS-only runtimes. The one argument (the image CMD) is the handler; the
# bootstrap is the first of /var/task/bootstrap, /opt/bootstrap,
# /var/runtime/bootstrap that exists (the order Lambda and the RIE use).
if [ \$# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="\$1"

RUNTIME_ENTRYPOINT=
for candidate in "\${LAMBDA_TASK_ROOT:-/var/task}/bootstrap" /opt/bootstrap "\${LAMBDA_RUNTIME_DIR:-/var/runtime}/bootstrap"; do
  if [ -f "\$candidate" ]; then
    RUNTIME_ENTRYPOINT="\$candidate"
    break
  fi
done
if [ -z "\$RUNTIME_ENTRYPOINT" ]; then
  echo "Couldn't find valid bootstrap(s): [\${LAMBDA_TASK_ROOT:-/var/task}/bootstrap /opt/bootstrap \${LAMBDA_RUNTIME_DIR:-/var/runtime}/bootstrap]" 1>&2
  exit 1
fi

if [ -z "\${AWS_LAMBDA_RUNTIME_API:-}" ]; then
$ENTRYPOINT_NO_RIE
fi
exec "\$RUNTIME_ENTRYPOINT"
EOF
  chmod 0755 "$r"/lambda-entrypoint.sh
}

write_node_files() {
  local r=$1
  write_runtime_entrypoint "$r" lambda-nodejs

  cat >"$r"/var/runtime/bootstrap <<EOF
#!/bin/bash
# /var/runtime/bootstrap of ruststack/lambda-nodejs:$NODE_MAJOR: starts the runtime client
# the way the public.ecr.aws/lambda/nodejs image starts its own (NODE_PATH, node flags,
# AWS_LAMBDA_EXEC_WRAPPER).
export AWS_EXECUTION_ENV="\${AWS_EXECUTION_ENV:-AWS_Lambda_nodejs$NODE_MAJOR.x}"
if [ -z "\${NODE_PATH:-}" ]; then
  export NODE_PATH=/opt/nodejs/node$NODE_MAJOR/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/runtime:/var/task
fi
RUNTIME_CMD=(/var/lang/bin/node --expose-gc --max-http-header-size 81920 /var/runtime/index.js)
$EXEC_WRAPPER
EOF
  [[ -f "$NODE_CLIENT" ]] || die "the Node runtime client is missing: $NODE_CLIENT"
  cp "$NODE_CLIENT" "$r"/var/runtime/index.js
  chmod 0755 "$r"/lambda-entrypoint.sh "$r"/var/runtime/bootstrap
  chmod 0644 "$r"/var/runtime/index.js
  ln -sfn /usr/bin/node "$r"/var/lang/bin/node
}

# ------------------------------------------------------------ image build
RECIPE=
recipe_hash() {
  {
    sha256sum "$SCRIPT_PATH" | cut -d' ' -f1
    if [[ -f "$NODE_CLIENT" ]]; then sha256sum "$NODE_CLIENT" | cut -d' ' -f1; fi
    if [[ -s "$HOST_CA_BUNDLE" ]]; then sha256sum "$HOST_CA_BUNDLE" | cut -d' ' -f1; fi
  } | sha256sum | cut -d' ' -f1
}

image_recipe() {
  docker image inspect --format '{{ index .Config.Labels "org.ruststack.recipe" }}' "$1" 2>/dev/null || true
}

# import_image BASE_TAR OVERLAY TAG RUNTIME: append OVERLAY to a copy of the
# cached rootfs tarball, then `docker import` it with the Dockerfile settings of
# the public.ecr.aws/lambda images. Docker refuses duplicate paths in a tar, so
# base files that the overlay replaces are deleted from the copy first, and
# directories that both have are left to the base. Further tarballs (EXTRA...)
# are concatenated as they are: they must hold only paths that nothing else has.
import_image() {
  local base=$1 overlay=$2 tag=$3 runtime=$4 extra
  shift 4
  local image_tar="$overlay.image.tar" lists="$overlay.lists"
  mkdir -p "$lists"
  cp "$base" "$image_tar"
  tar -tf "$base" | sed 's:/$::' | LC_ALL=C sort -u >"$lists/base"
  (cd "$overlay" && find . -mindepth 1 | LC_ALL=C sort) >"$lists/overlay"
  (cd "$overlay" && find . -mindepth 1 -type d | LC_ALL=C sort) >"$lists/overlay-dirs"
  LC_ALL=C comm -12 "$lists/base" "$lists/overlay" >"$lists/both"
  LC_ALL=C comm -23 "$lists/both" "$lists/overlay-dirs" >"$lists/replace"
  LC_ALL=C comm -23 "$lists/overlay" <(LC_ALL=C comm -12 "$lists/both" "$lists/overlay-dirs") >"$lists/add"
  if [[ -s "$lists/replace" ]]; then
    tar --delete -f "$image_tar" -T "$lists/replace"
  fi
  tar --numeric-owner --owner=0 --group=0 --no-recursion -rf "$image_tar" -C "$overlay" -T "$lists/add"
  for extra in "$@"; do
    tar -A -f "$image_tar" "$extra"
  done
  docker import \
    --change 'ENV LANG=en_US.UTF-8' \
    --change 'ENV TZ=:/etc/localtime' \
    --change 'ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin' \
    --change 'ENV LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib' \
    --change 'ENV LAMBDA_TASK_ROOT=/var/task' \
    --change 'ENV LAMBDA_RUNTIME_DIR=/var/runtime' \
    --change 'WORKDIR /var/task' \
    --change 'ENTRYPOINT ["/lambda-entrypoint.sh"]' \
    --change "LABEL org.ruststack.recipe=$RECIPE" \
    --change "LABEL org.ruststack.runtime=$runtime" \
    --change "LABEL org.opencontainers.image.description=\"RustStack local Lambda image for $runtime (public.ecr.aws/lambda contract, Debian $DEBIAN_SUITE)\"" \
    --message "ruststack images/build.sh recipe $RECIPE" \
    "$image_tar" "$tag" >/dev/null
  rm -rf "$image_tar" "$lists"
}

# smoke TAG ARGS...: run a check container (no network); fail the build if it fails.
smoke() {
  local tag=$1; shift
  local out
  if ! out=$(docker run --rm --network none "$@" 2>&1); then
    echo "$out" >&2
    docker rmi "$tag" >/dev/null 2>&1 || true
    die "smoke test of $tag failed; image removed"
  fi
  printf '%s\n' "$out" | sed 's/^/    /' >&2
}

# check_entrypoint_contract TAG: no argument must give exit code 142.
check_entrypoint_contract() {
  local tag=$1 rc=0
  docker run --rm --network none "$tag" >/dev/null 2>&1 || rc=$?
  if [[ $rc -ne 142 ]]; then
    docker rmi "$tag" >/dev/null 2>&1 || true
    die "$tag: entrypoint with no argument exited $rc, expected 142; image removed"
  fi
}

finish_image() {
  local tag=$1 old_id=$2 new_id
  new_id=$(docker image inspect --format '{{.Id}}' "$tag")
  if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
    docker rmi "$old_id" >/dev/null 2>&1 || true   # kept if a container still uses it
  fi
  log "$tag: built, $(docker image inspect --format '{{.Size}}' "$tag" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
}

# pip_install_runtime DIR: awslambdaric and boto3 for the image's CPython, into DIR.
pip_install_runtime() {
  local dir=$1
  PIP_CACHE_DIR="$CACHE_DIR/pip" run_logged "$dir.pip.log" host_pip install \
    --disable-pip-version-check --no-warn-conflicts --no-warn-script-location \
    --root-user-action=ignore --upgrade \
    --target "$dir" \
    --implementation cp --python-version "$PY_VER" --abi "cp${PY_VER/./}" \
    --platform manylinux_2_36_x86_64 --platform manylinux2014_x86_64 \
    --only-binary=:all: \
    "awslambdaric==$AWSLAMBDARIC_VERSION" "boto3==$BOTO3_VERSION"
  local wheel_tag
  wheel_tag=$(grep '^Tag:' "$dir/awslambdaric-$AWSLAMBDARIC_VERSION.dist-info/WHEEL" | tr '\n' ' ')
  [[ "$wheel_tag" == *"cp${PY_VER/./}-cp${PY_VER/./}-manylinux"*"x86_64"* ]] ||
    die "awslambdaric wheel is not a cp${PY_VER/./} manylinux x86_64 wheel: $wheel_tag"
  compgen -G "$dir/runtime_client.cpython-${PY_VER/./}-x86_64-linux-gnu.so" >/dev/null ||
    die "awslambdaric's runtime_client extension is missing"
  rm -rf "${dir:?}/bin"
}

# runtime_packages_tarball: set $RUNTIME_TARBALL to a cached tarball of the
# packages under ./var/runtime/ (not the directory entry itself, so it can be
# concatenated onto the image tar without duplicate paths).
RUNTIME_TARBALL=
runtime_packages_tarball() {
  local key out tmp
  key=$( { echo "$PY_VER $AWSLAMBDARIC_VERSION $BOTO3_VERSION"; declare -f pip_install_runtime; } |
         sha256sum | cut -c1-16)
  out="$CACHE_DIR/python$PY_VER-runtime-packages-$key.tar"
  if [[ -s "$out" ]]; then
    log "python packages: cached ($out)"
    find "$CACHE_DIR" -maxdepth 1 -name "python$PY_VER-runtime-packages-*.tar" ! -path "$out" -delete
    RUNTIME_TARBALL=$out
    return
  fi
  new_tmp; tmp=$NEW_TMP
  log "python packages: pip install awslambdaric==$AWSLAMBDARIC_VERSION boto3==$BOTO3_VERSION (cp${PY_VER/./} manylinux x86_64 wheels only)"
  mkdir -p "$tmp/var/runtime"
  pip_install_runtime "$tmp/var/runtime"
  (cd "$tmp" && find ./var/runtime -mindepth 1 | LC_ALL=C sort) >"$tmp/list"
  tar --numeric-owner --owner=0 --group=0 --no-recursion -C "$tmp" -cf "$tmp/packages.tar" -T "$tmp/list"
  mv "$tmp/packages.tar" "$out"
  find "$CACHE_DIR" -maxdepth 1 -name "python$PY_VER-runtime-packages-*.tar" ! -path "$out" -delete
  rm -rf --one-file-system "$tmp"
  RUNTIME_TARBALL=$out
}

build_python() {
  local tag=$PYTHON_TAG tarball tmp r old_id
  rootfs_tarball python; tarball=$ROOTFS_TARBALL
  runtime_packages_tarball
  old_id=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
  new_tmp; tmp=$NEW_TMP; r=$tmp/overlay; mkdir -p "$r"
  common_layout "$r" "$tarball"

  write_python_files "$r"
  log "$tag: docker import"
  import_image "$tarball" "$r" "$tag" "python$PY_VER" "$RUNTIME_TARBALL"

  log "$tag: smoke test"
  smoke "$tag" --entrypoint /var/lang/bin/python$PY_VER "$tag" -c "
import sys; sys.path.insert(0, '/var/runtime')
import awslambdaric, runtime_client, boto3, simplejson, locale
assert sys.version_info[:2] == tuple(map(int, '$PY_VER'.split('.'))), sys.version
assert locale.getpreferredencoding() == 'UTF-8', locale.getpreferredencoding()
import os, stat
assert oct(os.stat('/tmp').st_mode & 0o7777) == '0o1777' and oct(os.stat('/').st_mode & 0o777) == '0o755'
assert os.access('/var/runtime/bootstrap', os.X_OK) and os.access('/lambda-entrypoint.sh', os.X_OK)
print('python', sys.version.split()[0], 'boto3', boto3.__version__)"
  check_entrypoint_contract "$tag"
  finish_image "$tag" "$old_id"
}

build_provided() {
  local tag=$PROVIDED_TAG tarball tmp r old_id
  rootfs_tarball provided; tarball=$ROOTFS_TARBALL
  old_id=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
  new_tmp; tmp=$NEW_TMP; r=$tmp/overlay; mkdir -p "$r"
  common_layout "$r" "$tarball"
  write_provided_files "$r"
  log "$tag: docker import"
  import_image "$tarball" "$r" "$tag" "provided.al2023"

  log "$tag: smoke test"
  # shellcheck disable=SC2016  # runs in the container's sh
  smoke "$tag" --entrypoint /bin/sh "$tag" -c '
    set -e; curl --version | head -n1; ldd --version | head -n1
    test -f /usr/lib/x86_64-linux-gnu/libgcc_s.so.1
    test "$(stat -c %a /tmp)" = 1777 && test "$(stat -c %a /)" = 755 && test -x /lambda-entrypoint.sh' 
  check_entrypoint_contract "$tag"
  finish_image "$tag" "$old_id"
}

build_node() {
  local tag=$NODE_TAG tarball tmp r old_id
  node_rootfs_tarball; tarball=$ROOTFS_TARBALL
  old_id=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
  new_tmp; tmp=$NEW_TMP; r=$tmp/overlay; mkdir -p "$r"
  common_layout "$r" "$tarball"
  write_node_files "$r"
  log "$tag: docker import"
  import_image "$tarball" "$r" "$tag" "nodejs$NODE_MAJOR.x"

  log "$tag: smoke test"
  smoke "$tag" --entrypoint /var/lang/bin/node "$tag" -e "
const fs = require('fs');
if (process.versions.node.split('.')[0] !== '$NODE_MAJOR') throw new Error('node ' + process.version);
for (const f of ['/var/runtime/bootstrap', '/lambda-entrypoint.sh']) fs.accessSync(f, fs.constants.X_OK);
new Function(fs.readFileSync('/var/runtime/index.js', 'utf8'));
if ((fs.statSync('/tmp').mode & 0o7777) !== 0o1777) throw new Error('/tmp mode');
console.log('node', process.version);"
  check_entrypoint_contract "$tag"
  finish_image "$tag" "$old_id"
}

# ------------------------------------------------------------------- main
main() {
  local force=0 targets=() t
  while [[ $# -gt 0 ]]; do
    case $1 in
      -h|--help) usage 0 ;;
      -f|--force) force=1 ;;
      all) targets+=(python provided node) ;;
      python|provided|node) targets+=("$1") ;;
      *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
    shift
  done
  [[ ${#targets[@]} -gt 0 ]] || targets=(python provided node)

  command -v docker >/dev/null || die "docker CLI not found"
  docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (docker info failed)"

  mkdir -p "$CACHE_DIR"
  # One build at a time per cache (tests may run this concurrently).
  exec 9>"$CACHE_DIR/.lock"
  if ! flock -n 9; then
    log "another build.sh holds $CACHE_DIR/.lock; waiting"
    flock 9
  fi

  RECIPE=$(recipe_hash)
  local -A seen=()
  for t in "${targets[@]}"; do
    [[ -z "${seen[$t]:-}" ]] || continue
    seen[$t]=1
    local tag
    case $t in python) tag=$PYTHON_TAG ;; provided) tag=$PROVIDED_TAG ;; node) tag=$NODE_TAG ;; esac
    if [[ $force -eq 0 && "$(image_recipe "$tag")" == "$RECIPE" ]]; then
      log "$tag: up to date (recipe ${RECIPE:0:12})"
      continue
    fi
    need_root
    log "$tag: building (recipe ${RECIPE:0:12}, cache $CACHE_DIR)"
    "build_$t"
  done
  log "done"
}

main "$@"
