"""The production deployment: systemd units, sysusers/tmpfiles entries and scripts/install.sh.

Everything is checked on an installation that ``scripts/install.sh`` makes into a temporary
DESTDIR, with systemd's own tools: ``systemd-analyze verify`` and ``security --offline`` read
the installed units under ``--root``, ``systemd-sysusers``/``systemd-tmpfiles`` create the user
and /etc/fileops there. What that cannot show is checked on real pieces: the mount options go
through gcsfuse's real mount helper onto a fake-gcs-server bucket.

Not checked here (no systemd as PID 1 on the test machine): starting the units, the sandbox at
run time, sd_notify. The tools run as root; a machine without them fails these tests, loudly.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fileops_daemon.contract.exitcodes import EXIT_CONFIG, EXIT_FORCED
from fileops_daemon.service.config import Config
from fileops_daemon.service.consumer import HANDOVER_SECONDS
from tests.emulators import harness

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "systemd"
INSTALL = REPO / "scripts" / "install.sh"
BUCKET = "example-projects"
MAX_EXPOSURE = 2.0
ENTRY_POINT = "opt/fileops/venv/bin/fileops"

Unit = dict[str, dict[str, list[str]]]


def read_unit(path: Path) -> Unit:
    """A unit file as {section: {key: [values in order]}}: repeated keys keep every value."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):  # continuation line
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"{path}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not a key=value line: {line!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def last(unit: Unit, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key)
    assert values, f"[{section}] {key}= is not set"
    return values[-1]


def seconds(value: str) -> float:
    """systemd time spans as used here: '90', '90s', '1min 30s'."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (SYSTEMD / "fileops.env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, **kwargs
    )


def install(destdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEOPS_")}
    env["DESTDIR"] = str(destdir)
    result = run(["bash", str(INSTALL), *args], env=env)
    assert result.returncode == 0, f"install.sh {args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def passwd_entry(root: Path, name: str) -> list[str]:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    raise AssertionError(f"no user {name} in {root}/etc/passwd")


def add_systemd_units(root: Path) -> None:
    """The distribution's own units (targets our units name), as on any systemd machine."""
    system = Path("/usr/lib/systemd/system")
    shutil.copytree(system, root / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True)


def verify(root: Path, *units: str) -> list[str]:
    """`systemd-analyze verify` under ``root``: every line it prints (it exits 0 on warnings)."""
    result = run(["systemd-analyze", "verify", f"--root={root}", *units])
    lines = (result.stdout + result.stderr).splitlines()
    if result.returncode != 0 and not lines:
        lines = [f"systemd-analyze verify exited {result.returncode}"]
    return lines


def exposure(root: Path, unit: str = "fileops-daemon.service") -> float:
    result = run(["systemd-analyze", "security", "--offline=yes", f"--root={root}", unit])
    match = re.search(
        rf"Overall exposure level for {re.escape(unit)}: (\d+(?:\.\d+)?)", result.stdout
    )
    assert match, f"no exposure level in:\n{result.stdout}\n{result.stderr}"
    return float(match.group(1))


@pytest.fixture(scope="session")
def systemd_tools() -> None:
    """systemd-analyze & co., installed by scripts/install-system-deps.sh when missing."""
    if os.geteuid() != 0:
        pytest.fail("test_systemd.py must run as root (install.sh chowns, apt-get installs)")
    deps = run(["bash", str(REPO / "scripts" / "install-system-deps.sh")])
    if deps.returncode != 0:
        pytest.fail(f"scripts/install-system-deps.sh failed:\n{deps.stdout}\n{deps.stderr}")
    missing = [
        t
        for t in ("systemd-analyze", "systemd-sysusers", "systemd-tmpfiles")
        if not shutil.which(t)
    ]
    if missing:
        pytest.fail(f"{', '.join(missing)} still missing after install-system-deps.sh")


@pytest.fixture(scope="session")
def installed(systemd_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`install.sh --no-venv` into a fresh root, plus a stand-in for the venv's entry point."""
    root = tmp_path_factory.mktemp("destdir")
    install(root, "--no-venv", "--projects-bucket", BUCKET)
    entry = root / ENTRY_POINT
    entry.parent.mkdir(parents=True)
    entry.write_text("#!/bin/sh\nexit 0\n")  # verify only checks that ExecStart is executable
    entry.chmod(0o755)
    add_systemd_units(root)
    return root


@pytest.fixture(scope="session")
def daemon_unit(installed: Path) -> Unit:
    return read_unit(installed / "etc/systemd/system/fileops-daemon.service")


@pytest.fixture(scope="session")
def mount_unit(installed: Path) -> Unit:
    return read_unit(installed / "etc/systemd/system/projects.mount")


class TestSystemdAccepts:
    def test_verify_prints_nothing_for_the_installed_units(self, installed: Path) -> None:
        assert verify(installed, "fileops-daemon.service", "projects.mount") == []

    def test_verify_prints_nothing_for_the_console_unit(self, installed: Path) -> None:
        assert (installed / "etc/systemd/system/fileops-console.service").read_bytes() == (
            SYSTEMD / "fileops-console.service"
        ).read_bytes()
        assert verify(installed, "fileops-console.service") == []

    def test_verify_prints_nothing_with_the_signing_key_drop_in(
        self, installed: Path, tmp_path: Path
    ) -> None:
        root = tmp_path / "root"
        shutil.copytree(installed, root, symlinks=True)
        install(root, "--no-venv", "--with-signing-key")
        assert (root / "etc/systemd/system/fileops-daemon.service.d/signing-key.conf").is_file()
        assert verify(root, "fileops-daemon.service") == []
        assert exposure(root) <= MAX_EXPOSURE

    def test_verify_does_report_a_broken_setting(self, installed: Path, tmp_path: Path) -> None:
        """The clean runs above mean something: the same call flags a bad value and a bad key."""
        root = tmp_path / "root"
        shutil.copytree(installed, root, symlinks=True)
        unit = root / "etc/systemd/system/fileops-daemon.service"
        unit.write_text(unit.read_text().replace("ProtectProc=invisible", "ProtectProc=nonsense"))
        dropin = root / "etc/systemd/system/projects.mount.d/bad.conf"
        dropin.parent.mkdir(parents=True)
        dropin.write_text("[Mount]\nNoSuchKey=1\n")
        output = "\n".join(verify(root, "fileops-daemon.service", "projects.mount"))
        assert "nonsense" in output
        assert "NoSuchKey" in output

    def test_exposure_of_the_daemon_is_at_most_2(self, installed: Path) -> None:
        assert exposure(installed) <= MAX_EXPOSURE


class TestDaemonUnit:
    """The settings the daemon's code and configuration rely on."""

    def test_it_is_a_notify_service_with_a_watchdog(self, daemon_unit: Unit) -> None:
        assert last(daemon_unit, "Service", "Type") == "notify"
        assert last(daemon_unit, "Service", "NotifyAccess") == "main"
        assert 10 <= seconds(last(daemon_unit, "Service", "WatchdogSec")) <= 300

    def test_it_runs_the_venv_entry_point_as_fileops(self, daemon_unit: Unit) -> None:
        assert last(daemon_unit, "Service", "ExecStart") == f"/{ENTRY_POINT} run"
        assert last(daemon_unit, "Service", "User") == "fileops"
        assert last(daemon_unit, "Service", "Group") == "fileops"
        assert last(daemon_unit, "Service", "EnvironmentFile") == "/etc/fileops/fileops.env"

    def test_it_needs_the_projects_mount(self, daemon_unit: Unit, mount_unit: Unit) -> None:
        projects = env_example()["FILEOPS_PROJECTS_ROOT"]
        assert projects == Config.projects_root == last(mount_unit, "Mount", "Where")
        assert projects in " ".join(daemon_unit["Unit"]["RequiresMountsFor"]).split()
        assert "projects.mount" in " ".join(daemon_unit["Unit"]["After"]).split()
        assert projects in " ".join(daemon_unit["Service"]["ReadWritePaths"]).split()

    def test_its_state_directory_is_the_configured_state_dir(
        self, daemon_unit: Unit, installed: Path
    ) -> None:
        state_dir = env_example()["FILEOPS_STATE_DIR"]
        assert state_dir == Config.state_dir
        assert f"/var/lib/{last(daemon_unit, 'Service', 'StateDirectory')}" == state_dir
        assert passwd_entry(installed, "fileops")[5] == state_dir

    def test_systemd_waits_longer_than_the_drain_and_the_hand_over(self, daemon_unit: Unit) -> None:
        drain = float(env_example()["FILEOPS_DRAIN_SECONDS"])
        assert drain == Config.drain_seconds
        assert last(daemon_unit, "Service", "KillSignal") == "SIGTERM"
        stop = seconds(last(daemon_unit, "Service", "TimeoutStopSec"))
        assert stop >= drain + HANDOVER_SECONDS + 10

    def test_restarts_on_failure_but_not_on_a_configuration_error(self, daemon_unit: Unit) -> None:
        assert last(daemon_unit, "Service", "Restart") == "on-failure"
        assert str(EXIT_CONFIG) in " ".join(daemon_unit["Service"]["RestartPreventExitStatus"])
        assert str(EXIT_FORCED) in " ".join(daemon_unit["Service"]["SuccessExitStatus"])

    def test_it_has_no_privileges_and_no_writable_system(self, daemon_unit: Unit) -> None:
        service = daemon_unit["Service"]
        assert service["CapabilityBoundingSet"] == [""]
        assert service["AmbientCapabilities"] == [""]
        assert last(daemon_unit, "Service", "NoNewPrivileges") == "yes"
        assert last(daemon_unit, "Service", "ProtectSystem") == "strict"
        assert last(daemon_unit, "Service", "MemoryDenyWriteExecute") == "yes"
        assert last(daemon_unit, "Service", "UMask") == "0027"
        assert service["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
        families = set(last(daemon_unit, "Service", "RestrictAddressFamilies").split())
        assert families == {"AF_INET", "AF_INET6", "AF_UNIX"}


class TestMountUnit:
    def options(self, mount_unit: Unit) -> dict[str, str]:
        return dict(
            (item.partition("=")[0], item.partition("=")[2])
            for item in last(mount_unit, "Mount", "Options").split(",")
        )

    def test_it_mounts_the_bucket_with_gcsfuse(self, mount_unit: Unit) -> None:
        assert last(mount_unit, "Mount", "What") == BUCKET
        assert last(mount_unit, "Mount", "Type") == "gcsfuse"
        assert "_netdev" in self.options(mount_unit)

    def test_it_sees_implicit_folders_and_caches_what_exists_for_a_second_only(
        self, mount_unit: Unit
    ) -> None:
        options = self.options(mount_unit)
        assert "implicit_dirs" in options
        assert options["metadata_cache_ttl_secs"] == "1"
        assert options["metadata_cache_negative_ttl_secs"] == "0"  # missing: asked every time
        assert options["kernel_list_cache_ttl_secs"] == "0"
        assert options["rename_dir_limit"] == "0"

    def test_production_keeps_atomic_renames(self, mount_unit: Unit) -> None:
        options = self.options(mount_unit)
        assert options.get("enable_atomic_rename_object", "true") == "true"
        assert "anonymous_access" not in options
        assert "custom_endpoint" not in options

    def test_every_inode_belongs_to_the_fileops_user(
        self, mount_unit: Unit, installed: Path
    ) -> None:
        options = self.options(mount_unit)
        user = passwd_entry(installed, "fileops")
        assert (options["uid"], options["gid"]) == (user[2], user[3])
        assert (options["file_mode"], options["dir_mode"]) == ("0640", "0750")
        assert "allow_other" in options  # the mount is made by root, the daemon is fileops

    def test_the_template_has_placeholders_only_for_bucket_and_owner(self) -> None:
        template = (SYSTEMD / "projects.mount").read_text()
        body = "\n".join(line for line in template.splitlines() if not line.startswith("#"))
        assert set(re.findall(r"@[A-Z_]+@", body)) == {
            "@PROJECTS_BUCKET@",
            "@FILEOPS_UID@",
            "@FILEOPS_GID@",
        }


@dataclass
class HelperMount:
    path: Path
    endpoint: str
    uid: int
    gid: int


def build_mount_helper(gcsfuse: Path, out_dir: Path) -> Path:
    """gcsfuse's mount helper (`mount.gcsfuse`), built from the pinned module the tests use."""
    version = run([str(gcsfuse), "--version"]).stdout
    match = re.search(r"gcsfuse version (\d+\.\d+\.\d+)", version)
    assert match, f"cannot read the gcsfuse version from {version!r}"
    cache = REPO / ".cache"
    env = dict(
        os.environ,
        GOPATH=str(cache / "go/path"),
        GOMODCACHE=str(cache / "go/mod"),
        GOCACHE=str(cache / "go/build"),
        GOBIN=str(out_dir),
        GOFLAGS="-modcacherw -buildvcs=false",
        GOTOOLCHAIN="local",
        CGO_ENABLED="0",
    )
    module = "github.com/googlecloudplatform/gcsfuse/v3/tools/mount_gcsfuse"
    result = run(["go", "install", "-trimpath", f"{module}@v{match.group(1)}"], env=env)
    assert result.returncode == 0, f"building the gcsfuse mount helper failed:\n{result.stderr}"
    return out_dir / "mount_gcsfuse"


@pytest.fixture(scope="class")
def helper_mount(
    mount_unit: Unit, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HelperMount]:
    """The production Options= through gcsfuse's real mount helper, on a fake-gcs bucket.

    Added for the emulator only: its endpoint, anonymous access, HNS off (see
    tests/emulators/README.md), no atomic rename (fake-gcs lacks MoveObject) and --foreground
    (so the helper stays our child). uid/gid are replaced by ids no account uses.
    """
    reason = harness.fuse_unavailable_reason()
    if reason is not None:
        pytest.fail(f"cannot mount with gcsfuse here: {reason}")
    tmp_path = tmp_path_factory.mktemp("helper-mount")
    gcsfuse = harness.ensure_binary(REPO / ".cache/bin/gcsfuse", "gcsfuse")
    helper = build_mount_helper(gcsfuse, tmp_path / "bin")
    uid, gid = 46_001, 46_002
    options = last(mount_unit, "Mount", "Options")
    options = re.sub(r"\buid=\d+", f"uid={uid}", options)
    options = re.sub(r"\bgid=\d+", f"gid={gid}", options)
    # Not under tmp_path: pytest keeps that 0700, and the test users must reach the mount.
    parent = Path(tempfile.mkdtemp(prefix="fileops-mount-"))
    parent.chmod(0o755)
    mnt = parent / "projects"
    mnt.mkdir()
    log = tmp_path / "gcsfuse.log"
    with harness.gcs_emulator() as endpoint:
        harness.create_bucket(endpoint, BUCKET)
        options += (
            f",custom_endpoint={endpoint}/storage/v1/,anonymous_access,enable_hns=false"
            f",enable_atomic_rename_object=false,foreground,log_file={log},log_format=text"
        )
        env = dict(os.environ, PATH=f"{gcsfuse.parent}:/usr/sbin:/usr/bin:/sbin:/bin")
        out = tmp_path / "helper.out"
        with out.open("wb") as out_fh:
            proc = subprocess.Popen(
                [str(helper), BUCKET, str(mnt), "-o", options],
                stdin=subprocess.DEVNULL,
                stdout=out_fh,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            deadline = time.monotonic() + 30
            while not os.path.ismount(mnt):
                if proc.poll() is not None or time.monotonic() > deadline:
                    logs = out.read_text() + (log.read_text() if log.exists() else "")
                    pytest.fail(f"the mount helper did not mount /projects:\n{logs}")
                time.sleep(0.05)
            yield HelperMount(mnt, endpoint, uid, gid)
        finally:
            if os.path.ismount(mnt):
                subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if not os.path.ismount(mnt):
                shutil.rmtree(parent, ignore_errors=True)


def as_user(uid: int, gid: int, script: str) -> subprocess.CompletedProcess[str]:
    return run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "sh", "-ec", script]
    )


class TestMountOptionsOnRealGcsfuse:
    def test_the_mount_helper_accepts_every_option(self, helper_mount: HelperMount) -> None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
        line = next(li for li in mountinfo.splitlines() if f" {helper_mount.path} " in li)
        assert "fuse.gcsfuse" in line
        assert "allow_other" in line and "default_permissions" in line
        st = helper_mount.path.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
            helper_mount.uid,
            helper_mount.gid,
            0o750,
        )

    def test_only_the_owner_writes_and_renames(self, helper_mount: HelperMount) -> None:
        mnt, uid, gid = helper_mount.path, helper_mount.uid, helper_mount.gid
        owner = as_user(
            uid,
            gid,
            f"mkdir '{mnt}/case'; echo hi > '{mnt}/case/a'; mv '{mnt}/case/a' '{mnt}/case/b'",
        )
        assert owner.returncode == 0, owner.stderr
        st = (mnt / "case" / "b").stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (uid, 0o640)
        stranger = as_user(uid + 7, gid + 7, f"ls '{mnt}'")
        assert stranger.returncode != 0 and "Permission denied" in stranger.stderr
        group = as_user(uid + 7, gid, f"cat '{mnt}/case/b'; touch '{mnt}/case/c'")
        assert "hi" in group.stdout and "Permission denied" in group.stderr

    def test_a_name_missing_a_moment_ago_is_seen_at_once(self, helper_mount: HelperMount) -> None:
        late = helper_mount.path / "late.txt"
        assert not late.exists()  # would be cached as missing with a negative TTL
        url = (
            f"{helper_mount.endpoint}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name=late.txt"
        )
        request = urllib.request.Request(url, data=b"late\n", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        assert late.read_bytes() == b"late\n"


class TestInstallScript:
    def test_installs_every_file_with_its_owner_and_mode(self, installed: Path) -> None:
        gid = int(passwd_entry(installed, "fileops")[3])
        expected = {
            "usr/lib/sysusers.d/fileops.conf": (0, 0, 0o644),
            "usr/lib/tmpfiles.d/fileops.conf": (0, 0, 0o644),
            "etc/systemd/system/fileops-daemon.service": (0, 0, 0o644),
            "etc/systemd/system/projects.mount": (0, 0, 0o644),
            "etc/fileops": (0, gid, 0o750),
            "etc/fileops/fileops.env": (0, gid, 0o640),
        }
        for relative, (uid, group, mode) in expected.items():
            st = (installed / relative).stat()
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, group, mode), relative
        assert (installed / "usr/lib/sysusers.d/fileops.conf").read_bytes() == (
            SYSTEMD / "fileops.sysusers.conf"
        ).read_bytes()
        assert (installed / "etc/systemd/system/fileops-daemon.service").read_bytes() == (
            SYSTEMD / "fileops-daemon.service"
        ).read_bytes()
        assert (installed / "etc/fileops/fileops.env").read_bytes() == (
            SYSTEMD / "fileops.env.example"
        ).read_bytes()
        assert not (installed / "opt/fileops/venv/bin/python").exists()  # --no-venv

    def test_the_user_is_a_system_user_without_a_login(self, installed: Path) -> None:
        _name, _, uid, gid, _, home, shell = passwd_entry(installed, "fileops")
        assert int(uid) < 1000 and int(gid) < 1000
        assert (home, shell) == ("/var/lib/fileops", "/usr/sbin/nologin")

    def test_a_second_run_keeps_the_env_file_and_the_bucket(
        self, installed: Path, tmp_path: Path
    ) -> None:
        root = tmp_path / "root"
        shutil.copytree(installed, root, symlinks=True)
        env_file = root / "etc/fileops/fileops.env"
        env_file.write_text("FILEOPS_PROJECT=edited-by-the-operator\n")
        before = env_file.stat()
        result = install(root, "--no-venv")  # no bucket given: the installed unit keeps its own
        assert f"kept existing {env_file}" in result.stdout
        assert env_file.read_text() == "FILEOPS_PROJECT=edited-by-the-operator\n"
        assert (env_file.stat().st_mode, env_file.stat().st_gid) == (before.st_mode, before.st_gid)
        mount = read_unit(root / "etc/systemd/system/projects.mount")
        assert last(mount, "Mount", "What") == BUCKET
        assert passwd_entry(root, "fileops") == passwd_entry(installed, "fileops")
        users = [line.split(":")[0] for line in (root / "etc/passwd").read_text().splitlines()]
        assert users.count("fileops") == 1

    def test_refuses_to_install_without_a_bucket(self, systemd_tools: None, tmp_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FILEOPS_")}
        result = run(["bash", str(INSTALL), "--no-venv"], env=dict(env, DESTDIR=str(tmp_path)))
        assert result.returncode != 0
        assert "--projects-bucket" in result.stderr
        bad = run(
            ["bash", str(INSTALL), "--no-venv", "--projects-bucket", "gs://x/y"],
            env=dict(env, DESTDIR=str(tmp_path)),
        )
        assert bad.returncode != 0 and "not a bucket name" in bad.stderr
        assert not (tmp_path / "etc/systemd/system/projects.mount").exists()

    @pytest.mark.slow
    def test_the_venv_provides_the_entry_point_the_unit_runs(
        self, systemd_tools: None, tmp_path: Path
    ) -> None:
        """The full install (pip from PyPI, ~20 s): verify then needs no stand-in."""
        root = tmp_path / "root"
        install(root, "--projects-bucket", BUCKET)
        entry = root / ENTRY_POINT
        assert run([str(entry), "--help"]).returncode == 0
        python = str(root / "opt/fileops/venv/bin/python")
        assert (
            run([python, "-c", "import sys; sys.exit(sys.version_info < (3, 11))"]).returncode == 0
        )
        add_systemd_units(root)
        assert verify(root, "fileops-daemon.service", "projects.mount") == []
