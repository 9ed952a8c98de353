"""Folder descriptors kept for up to a second: only where a folder is its name (gcsfuse),
dropped after our own rmdir, closed by their last user. The gcsfuse side is checked against a
real mount in tests/test_gcsfuse_requests.py."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fileops_daemon.core.folder_cache import MAX_KEPT, FolderCache, names_are_folders
from fileops_daemon.core.fsops import CaseFS, FolderMissingError


def _mountinfo(tmp_path: Path, device: int, fstype: str) -> Path:
    path = tmp_path / "mountinfo"
    major, minor = os.major(device), os.minor(device)
    path.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        f"98 22 {major}:{minor} / /projects rw,nosuid,nodev,relatime shared:50 - {fstype} "
        "projects rw,user_id=0,group_id=0,default_permissions\n",
        encoding="utf-8",
    )
    return path


class TestWhereFoldersAreKept:
    def test_a_gcsfuse_mount_binds_folders_to_names(self, tmp_path: Path) -> None:
        device = os.makedev(0, 77)
        assert names_are_folders(device, _mountinfo(tmp_path, device, "fuse.gcsfuse"))

    @pytest.mark.parametrize("fstype", ["ext4", "tmpfs", "fuse.sshfs", "fuse"])
    def test_any_other_filesystem_does_not(self, tmp_path: Path, fstype: str) -> None:
        device = os.makedev(0, 77)
        assert not names_are_folders(device, _mountinfo(tmp_path, device, fstype))

    def test_an_unreadable_table_keeps_nothing(self, tmp_path: Path) -> None:
        assert not names_are_folders(os.makedev(0, 77), tmp_path / "missing")

    def test_a_local_case_folder_keeps_nothing(self, tmp_path: Path) -> None:
        (tmp_path / "case" / "inbox").mkdir(parents=True)
        with CaseFS(str(tmp_path / "case")) as fs:
            fd = fs.open_folder(("inbox",))
            fs.close_folder(fd)
            with pytest.raises(OSError):
                os.fstat(fd)  # closed: nothing was kept


class TestALocalFolderMovedAway:
    def test_a_folder_renamed_out_of_the_case_is_not_followed(self, tmp_path: Path) -> None:
        """Why descriptors are not kept on local filesystems: one would follow the folder."""
        case = tmp_path / "case"
        (case / "inbox").mkdir(parents=True)
        (case / "inbox" / "a.pdf").write_text("a")
        (case / "inbox" / "b.pdf").write_text("b")
        (case / "sorted").mkdir()
        elsewhere = tmp_path / "elsewhere"
        with CaseFS(str(case)) as fs:
            fs.rename(("inbox", "a.pdf"), ("sorted", "a.pdf"))
            (case / "sorted").rename(elsewhere)
            with pytest.raises(FolderMissingError):
                fs.rename(("inbox", "b.pdf"), ("sorted", "b.pdf"))
        assert sorted(p.name for p in elsewhere.iterdir()) == ["a.pdf"]
        assert (case / "inbox" / "b.pdf").exists()


class TestFolderCache:
    @staticmethod
    def _folder(tmp_path: Path, name: str) -> int:
        (tmp_path / name).mkdir(exist_ok=True)
        return os.open(tmp_path / name, os.O_PATH | os.O_DIRECTORY)

    @staticmethod
    def _is_open(fd: int) -> bool:
        try:
            os.fstat(fd)
        except OSError:
            return False
        return True

    def test_a_kept_folder_is_found_and_its_nearest_ancestor_too(self, tmp_path: Path) -> None:
        cache = FolderCache(enabled=True)
        fd = self._folder(tmp_path, "a")
        assert cache.keep(("a",), fd)
        assert cache.acquire(("a",)) == fd
        assert cache.acquire_nearest(("a", "b", "c")) == (1, fd)
        assert cache.acquire_nearest(("x", "b")) == (0, None)
        cache.close()
        assert not self._is_open(fd)

    def test_a_kept_folder_is_walked_to_again_after_its_time(self, tmp_path: Path) -> None:
        cache = FolderCache(enabled=True, max_age=0.05)
        fd = self._folder(tmp_path, "a")
        cache.keep(("a",), fd)
        assert cache.release(fd)
        time.sleep(0.1)
        assert cache.acquire(("a",)) is None
        assert not self._is_open(fd)  # nobody was using it
        cache.close()

    def test_a_dropped_folder_in_use_is_closed_by_its_last_user(self, tmp_path: Path) -> None:
        cache = FolderCache(enabled=True)
        fds = [self._folder(tmp_path, name) for name in ("a", "b", "c")]
        cache.keep(("a",), fds[0])  # held by the walker that kept it
        cache.keep(("a", "b"), fds[1])
        cache.release(fds[1])
        cache.keep(("c",), fds[2])
        cache.release(fds[2])
        cache.drop(("a",))
        assert cache.acquire(("a",)) is None
        assert cache.acquire(("a", "b")) is None
        assert cache.acquire(("c",)) == fds[2]
        assert self._is_open(fds[0])  # still in use by its walker
        assert not self._is_open(fds[1])
        assert cache.release(fds[0])
        assert not self._is_open(fds[0])
        cache.close()
        assert not self._is_open(fds[2])

    def test_beyond_the_cap_a_folder_is_not_kept(self, tmp_path: Path) -> None:
        cache = FolderCache(enabled=True)
        fd = self._folder(tmp_path, "a")
        for i in range(MAX_KEPT):
            assert cache.keep((f"f{i}",), os.dup(fd))
        assert not cache.keep(("one-more",), fd)
        assert not cache.release(fd)  # not the cache's: the caller closes it
        os.close(fd)
        cache.close()

    def test_a_disabled_cache_keeps_nothing(self, tmp_path: Path) -> None:
        cache = FolderCache(enabled=False)
        fd = self._folder(tmp_path, "a")
        assert not cache.keep(("a",), fd)
        assert cache.acquire(("a",)) is None
        assert not cache.release(fd)
        os.close(fd)


def test_a_case_fs_that_keeps_folders_walks_again_after_its_own_rmdir(tmp_path: Path) -> None:
    case = tmp_path / "case"
    (case / "old" / "inner").mkdir(parents=True)
    with CaseFS(str(case), keep_folders=True) as fs:
        kept = fs.open_folder(("old", "inner"))
        fs.close_folder(kept)
        assert fs.open_folder(("old", "inner")) == kept  # the same descriptor, not a new walk
        fs.rmdir(("old", "inner"))
        fs.rmdir(("old",))
        with pytest.raises(FolderMissingError):
            fs.open_folder(("old", "inner"))


def test_workers_asking_for_the_same_folder_at_once_share_one_walk(tmp_path: Path) -> None:
    (tmp_path / "case" / "a" / "b").mkdir(parents=True)
    with CaseFS(str(tmp_path / "case"), keep_folders=True) as fs:
        with ThreadPoolExecutor(8) as pool:
            fds = set(pool.map(lambda _: fs.open_folder(("a", "b")), range(32)))
        assert len(fds) == 1
