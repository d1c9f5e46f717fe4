"""The unit file, its hardening score, and install.sh, checked with the real tools."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "packaging/systemd/diarized.service"
API_UNIT = ROOT / "packaging/systemd/diarized-api.service"
API_SOCKET = ROOT / "packaging/systemd/diarized-api.socket"
MAX_EXPOSURE = 2.0

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed (make test installs it)")


def _unit_with_real_binary(tmp_path: Path, unit: Path = UNIT) -> Path:
    """verify checks that ExecStart exists: point it at this checkout's venv."""
    binary = Path(sys.executable).parent / "diarized"
    assert binary.exists()
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/opt/diarized/venv/bin/diarized", str(binary)))
    return copy


@needs_analyze
@pytest.mark.parametrize("unit", [UNIT, API_UNIT], ids=lambda u: u.name)
def test_units_verify_clean(tmp_path, unit):
    units = [_unit_with_real_binary(tmp_path, unit)]
    if unit == API_UNIT:
        units.append(tmp_path / API_SOCKET.name)
        units[-1].write_text(API_SOCKET.read_text())
    proc = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "diarized" not in proc.stderr, proc.stderr


def exposure(unit: Path) -> tuple[float, str]:
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
                          capture_output=True, text=True)
    match = re.search(rf"Overall exposure level for {unit.name}: ([\d.]+) (\w+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return float(match.group(1)), match.group(2)


@needs_analyze
@pytest.mark.parametrize("unit", [UNIT, API_UNIT], ids=lambda u: u.name)
def test_security_exposure_is_ok(unit):
    score, word = exposure(unit)
    assert score <= MAX_EXPOSURE and word in ("SAFE", "OK")


def test_the_daemon_has_no_network_and_the_api_only_what_it_needs():
    daemon = UNIT.read_text().splitlines()
    assert "RestrictAddressFamilies=AF_UNIX" in daemon and "PrivateNetwork=yes" in daemon
    assert [line for line in daemon if line.startswith("RestrictAddressFamilies=")] == ["RestrictAddressFamilies=AF_UNIX"]
    api = API_UNIT.read_text().splitlines()
    assert "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" in api
    assert "IPAddressDeny=any" in api and "IPAddressAllow=localhost" in api and "PrivateNetwork=yes" not in api
    assert "ListenStream=127.0.0.1:8787" in API_SOCKET.read_text().splitlines()


@needs_analyze
def test_the_postgresql_drop_in_opens_only_the_network_a_node_needs(tmp_path):
    """The unit with the drop-in applied (a [Service] section appended, as systemd merges it)."""
    drop_in = (ROOT / "packaging/systemd/diarized.service.d/postgresql.conf").read_text()
    assert "IPAddressDeny" not in drop_in.replace("IPAddressDeny=any stays", "")  # the deny-all stays
    merged = _unit_with_real_binary(tmp_path)
    merged.write_text(merged.read_text() + "\n" + drop_in)
    proc = subprocess.run(["systemd-analyze", "verify", str(merged)], capture_output=True, text=True)
    assert proc.returncode == 0 and "diarized" not in proc.stderr, proc.stderr
    score, word = exposure(merged)
    assert score <= MAX_EXPOSURE and word in ("SAFE", "OK"), score
    assert score > exposure(_unit_with_real_binary(tmp_path))[0]  # it was applied: more exposed, still OK


def test_unit_has_what_operators_rely_on():
    text = UNIT.read_text()
    for directive in ("Type=notify", "WatchdogSec=", "KillMode=mixed", "Restart=on-failure",
                      "StateDirectory=diarized", "ConfigurationDirectory=diarized", "MemoryMax=",
                      "MemoryHigh=", "TasksMax=", "UMask=0027", "RestrictAddressFamilies=AF_UNIX",
                      "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service"):
        assert directive in text, directive


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (make test installs it)")
def test_install_script_is_shellcheck_clean():
    proc = subprocess.run(["shellcheck", str(ROOT / "packaging/install.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def _install(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "packaging/install.sh"), *args], capture_output=True, text=True)


def test_install_in_destdir_lays_out_files_and_keeps_edited_config(tmp_path):
    dest = tmp_path / "root"
    proc = _install("--destdir", str(dest), "--no-venv", "--prefix", "/srv/diarized")
    assert proc.returncode == 0, proc.stderr
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["etc/diarized/diarized.toml", "etc/systemd/system/diarized-api.service",
                     "etc/systemd/system/diarized-api.socket", "etc/systemd/system/diarized.service",
                     "usr/lib/sysusers.d/diarized.conf", "usr/lib/tmpfiles.d/diarized.conf"]
    unit = (dest / "etc/systemd/system/diarized.service").read_text()
    assert "ExecStart=/srv/diarized/venv/bin/diarized run" in unit
    config = dest / "etc/diarized/diarized.toml"
    config.write_text(config.read_text() + "\n# edited by the operator\n")
    edited = config.read_text()
    assert _install("--destdir", str(dest), "--no-venv").returncode == 0  # idempotent
    assert config.read_text() == edited and (dest / "etc/diarized/diarized.toml.new").exists()
    assert _install("--destdir", str(dest), "--uninstall").returncode == 0
    assert not (dest / "etc/systemd/system/diarized.service").exists() and config.read_text() == edited
    assert not list((dest / "etc/systemd/system").glob("diarized-api.*"))


def test_tmpfiles_make_the_inbox_group_writable():
    lines = (ROOT / "packaging/tmpfiles.d/diarized.conf").read_text().splitlines()
    inbox = next(line.split() for line in lines if line.split()[1:2] == ["/var/lib/diarized/inbox"])
    assert inbox[2] == "2770" and inbox[4] == "diarized"
