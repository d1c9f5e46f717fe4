#!/usr/bin/env bash
# Install diarized as a systemd service. Idempotent: run it again to upgrade.
#
#   sudo packaging/install.sh                 install or upgrade, enable and start
#   sudo packaging/install.sh --uninstall     remove the program and unit (keeps
#                                             /var/lib/diarized and /etc/diarized)
#   packaging/install.sh --destdir DIR [--no-venv]   stage files under DIR only
#                                             (no apt, no users, no systemctl)
#
# Options: --prefix DIR (default /opt/diarized), --python PYTHON (default python3).
set -euo pipefail

PREFIX=/opt/diarized
DESTDIR=${DESTDIR:-}
PYTHON=python3
ACTION=install
MAKE_VENV=1
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
APT_PACKAGES=(python3-venv python3-dev gcc pkg-config libsystemd-dev)

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=$2; shift 2 ;;
    --destdir) DESTDIR=$2; shift 2 ;;
    --python) PYTHON=$2; shift 2 ;;
    --no-venv) MAKE_VENV=0; shift ;;
    --uninstall) ACTION=uninstall; shift ;;
    -h|--help) usage 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage 2 ;;
  esac
done

ROOT=${DESTDIR%/}
UNIT_DIR=$ROOT/etc/systemd/system
SYSUSERS_DIR=$ROOT/usr/lib/sysusers.d
TMPFILES_DIR=$ROOT/usr/lib/tmpfiles.d
CONF_DIR=$ROOT/etc/diarized
staged() { [ -n "$ROOT" ]; }
say() { printf 'install.sh: %s\n' "$*"; }

install_system_packages() {
  staged && return 0
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  fi
}

install_venv() {
  [ "$MAKE_VENV" = 1 ] || return 0
  local venv=$ROOT$PREFIX/venv
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet "${SRC}[systemd,api]"
  install -m 0644 "$SRC/README.md" "$ROOT$PREFIX/README.md"
}

install_files() {
  install -d -m 0755 "$UNIT_DIR" "$SYSUSERS_DIR" "$TMPFILES_DIR" "$ROOT$PREFIX"
  sed "s#/opt/diarized#$PREFIX#g" "$SRC/packaging/systemd/diarized.service" > "$UNIT_DIR/diarized.service.new"
  chmod 0644 "$UNIT_DIR/diarized.service.new"
  mv "$UNIT_DIR/diarized.service.new" "$UNIT_DIR/diarized.service"
  # the optional network-facing service; enabled by the operator (README, HTTP API)
  sed "s#/opt/diarized#$PREFIX#g" "$SRC/packaging/systemd/diarized-api.service" > "$UNIT_DIR/diarized-api.service.new"
  chmod 0644 "$UNIT_DIR/diarized-api.service.new"
  mv "$UNIT_DIR/diarized-api.service.new" "$UNIT_DIR/diarized-api.service"
  install -m 0644 "$SRC/packaging/systemd/diarized-api.socket" "$UNIT_DIR/diarized-api.socket"
  install -m 0644 "$SRC/packaging/sysusers.d/diarized.conf" "$SYSUSERS_DIR/diarized.conf"
  install -m 0644 "$SRC/packaging/tmpfiles.d/diarized.conf" "$TMPFILES_DIR/diarized.conf"
  install -d -m 0755 "$CONF_DIR"
  # The operator's config is never overwritten: a newer example goes beside it.
  if [ ! -e "$CONF_DIR/diarized.toml" ]; then
    install -m 0644 "$SRC/etc/diarized.toml" "$CONF_DIR/diarized.toml"
  elif ! cmp -s "$SRC/etc/diarized.toml" "$CONF_DIR/diarized.toml"; then
    install -m 0644 "$SRC/etc/diarized.toml" "$CONF_DIR/diarized.toml.new"
    say "kept your $CONF_DIR/diarized.toml; the new example is diarized.toml.new"
  fi
}

activate() {
  staged && return 0
  systemd-sysusers "$SYSUSERS_DIR/diarized.conf"
  systemd-tmpfiles --create "$TMPFILES_DIR/diarized.conf"
  chgrp diarized "$CONF_DIR/diarized.toml" && chmod 0640 "$CONF_DIR/diarized.toml"
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable diarized.service
    systemctl restart diarized.service
    say "running: systemctl status diarized; journalctl -u diarized"
  else
    say "systemd is not running here: files installed, service not started"
  fi
}

uninstall() {
  if ! staged && [ -d /run/systemd/system ]; then
    systemctl disable --now diarized-api.socket diarized-api.service diarized.service 2>/dev/null || true
  fi
  rm -f "$UNIT_DIR/diarized.service" "$UNIT_DIR/diarized-api.service" "$UNIT_DIR/diarized-api.socket" \
    "$SYSUSERS_DIR/diarized.conf" "$TMPFILES_DIR/diarized.conf"
  rm -rf "${ROOT:?}$PREFIX/venv" "$ROOT$PREFIX/README.md"
  rmdir "$ROOT$PREFIX" 2>/dev/null || true
  if ! staged && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
  say "removed the program and unit; kept /var/lib/diarized (your files) and $CONF_DIR"
}

if [ "$ACTION" = uninstall ]; then
  uninstall
else
  install_system_packages
  install_files
  install_venv
  activate
  say "installed under ${ROOT:-/}"
fi
