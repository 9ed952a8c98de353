"""Dry runs: operations apply in order to a virtual tree; any conflict rejects the plan."""

from __future__ import annotations

import hashlib
import unicodedata

import pytest

from fileops_daemon.contract.limits import Limits
from tests.conftest import World
from tests.support import CASE, apply_doc, error_codes, plan_doc, snapshot


def dry(world: World, ops: list[dict[str, object]], **kwargs: object) -> dict[str, object]:
    before = snapshot(world.base)
    result = apply_doc(plan_doc(ops, dry_run=True), world.root, world.state, **kwargs)
    assert snapshot(world.base) == before, "a dry run changed the tree"
    return result


class TestOrdering:
    def test_mkdir_then_move_into_it(self, world: World) -> None:
        result = dry(
            world,
            [
                {"type": "mkdir", "path": f"{CASE}/Photos/2024"},
                {
                    "type": "move",
                    "from": f"{CASE}/uncategorized/file1.pdf",
                    "to": f"{CASE}/Photos/2024/file1.pdf",
                },
            ],
        )
        assert result["status"] == "planned"
        assert [c["action"] for c in result["changes"]] == [
            "create_folder",
            "create_folder",
            "move",
        ]

    def test_move_chain_a_to_b_to_c(self, world: World) -> None:
        result = dry(
            world,
            [
                {"type": "move", "from": f"{CASE}/uncategorized/file1.pdf", "to": f"{CASE}/b.pdf"},
                {"type": "move", "from": f"{CASE}/b.pdf", "to": f"{CASE}/Investigation/c.pdf"},
            ],
        )
        assert result["status"] == "planned"
        assert result["changes"][1]["to"] == f"{CASE}/Investigation/c.pdf"

    def test_moving_what_an_earlier_operation_moved_away_is_a_conflict(self, world: World) -> None:
        result = dry(
            world,
            [
                {"type": "move", "from": f"{CASE}/uncategorized/file1.pdf", "to": f"{CASE}/b.pdf"},
                {"type": "move", "from": f"{CASE}/uncategorized/file1.pdf", "to": f"{CASE}/c.pdf"},
            ],
        )
        assert result["status"] == "rejected"
        assert error_codes(result) == ["source_missing"]
        assert result["operations"][1]["code"] == "source_missing"
        assert result["changes"] == []

    def test_write_then_copy_what_was_written(self, world: World) -> None:
        result = dry(
            world,
            [
                {"type": "write", "path": f"{CASE}/notes.txt", "content": "n"},
                {"type": "copy", "from": f"{CASE}/notes.txt", "to": f"{CASE}/Investigation/n.txt"},
            ],
        )
        assert result["status"] == "planned"

    def test_delete_then_write_the_same_name(self, world: World) -> None:
        result = dry(
            world,
            [
                {"type": "delete", "path": f"{CASE}/Investigation/report.txt"},
                {"type": "write", "path": f"{CASE}/Investigation/report.txt", "content": "v2"},
            ],
        )
        assert result["status"] == "planned"

    def test_folder_move_then_move_a_file_inside_its_new_place(self, world: World) -> None:
        result = dry(
            world,
            [
                {
                    "type": "move",
                    "from": f"{CASE}/uncategorized",
                    "to": f"{CASE}/Investigation/old",
                },
                {
                    "type": "move",
                    "from": f"{CASE}/Investigation/old/file2.pdf",
                    "to": f"{CASE}/Medical Records/file2.pdf",
                },
            ],
        )
        assert result["status"] == "planned"
        assert result["changes"][0]["files"] == 3


class TestConflicts:
    @pytest.mark.parametrize(
        ("op", "code"),
        [
            ({"type": "move", "from": f"{CASE}/nope.pdf", "to": f"{CASE}/x.pdf"}, "source_missing"),
            ({"type": "delete", "path": f"{CASE}/nope"}, "source_missing"),
            (
                {
                    "type": "move",
                    "from": f"{CASE}/uncategorized/file1.pdf",
                    "to": f"{CASE}/uncategorized/file2.pdf",
                },
                "destination_exists",
            ),
            (
                {
                    "type": "copy",
                    "from": f"{CASE}/uncategorized/file1.pdf",
                    "to": f"{CASE}/Investigation/report.txt",
                },
                "destination_exists",
            ),
            (
                {"type": "write", "path": f"{CASE}/Investigation/report.txt", "content": "x"},
                "destination_exists",
            ),
            (
                {
                    "type": "move",
                    "from": f"{CASE}/uncategorized/file1.pdf",
                    "to": f"{CASE}/No Such Folder/file1.pdf",
                },
                "parent_missing",
            ),
            ({"type": "write", "path": f"{CASE}/a/b/c.txt", "content": "x"}, "parent_missing"),
            ({"type": "mkdir", "path": f"{CASE}/uncategorized/file1.pdf/sub"}, "type_conflict"),
            (
                {"type": "copy", "from": f"{CASE}/uncategorized", "to": f"{CASE}/u2"},
                "type_conflict",
            ),
            (
                {
                    "type": "move",
                    "from": f"{CASE}/uncategorized/file1.pdf",
                    "to": f"{CASE}/Investigation",
                    "overwrite": True,
                },
                "type_conflict",
            ),
            (
                {
                    "type": "write",
                    "path": f"{CASE}/Investigation",
                    "content": "x",
                    "overwrite": True,
                },
                "type_conflict",
            ),
            (
                {
                    "type": "move",
                    "from": f"{CASE}/uncategorized",
                    "to": f"{CASE}/uncategorized/inner",
                },
                "move_into_itself",
            ),
            (
                {
                    "type": "move",
                    "from": f"{CASE}/uncategorized/file1.pdf",
                    "to": f"{CASE}/x.pdf",
                    "expect": {"size": 1},
                },
                "precondition_failed",
            ),
            (
                {
                    "type": "delete",
                    "path": f"{CASE}/uncategorized/file1.pdf",
                    "expect": {"sha256": "0" * 64},
                },
                "precondition_failed",
            ),
        ],
    )
    def test_conflict_rejects_the_plan(
        self, world: World, op: dict[str, object], code: str
    ) -> None:
        result = dry(world, [{"type": "mkdir", "path": f"{CASE}/fine"}, op])
        assert result["status"] == "rejected"
        assert error_codes(result) == [code]
        assert result["operations"][0]["outcome"] == "ok"
        assert result["operations"][1]["outcome"] == "refused"

    def test_matching_preconditions_pass(self, world: World) -> None:
        content = (world.case / "uncategorized" / "file2.pdf").read_bytes()
        expect = {"size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
        result = dry(
            world,
            [
                {
                    "type": "move",
                    "from": f"{CASE}/uncategorized/file2.pdf",
                    "to": f"{CASE}/f2.pdf",
                    "expect": expect,
                }
            ],
        )
        assert result["status"] == "planned"

    def test_every_conflict_is_reported(self, world: World) -> None:
        result = dry(
            world,
            [
                {"type": "delete", "path": f"{CASE}/nope1"},
                {"type": "mkdir", "path": f"{CASE}/ok"},
                {"type": "delete", "path": f"{CASE}/nope2"},
            ],
        )
        assert [e.get("operation") for e in result["errors"]] == [0, 2]

    def test_delete_limit(self, world: World) -> None:
        result = dry(
            world,
            [{"type": "delete", "path": f"{CASE}/uncategorized"}],
            limits=Limits(max_deletes=2),
        )
        assert error_codes(result) == ["limit_exceeded"]

    def test_step_limit_counts_expanded_folder_moves(self, world: World) -> None:
        result = dry(
            world,
            [{"type": "move", "from": f"{CASE}/uncategorized", "to": f"{CASE}/u"}],
            limits=Limits(max_steps=3),
        )
        assert error_codes(result) == ["limit_exceeded"]

    def test_one_copy_over_the_byte_limit(self, world: World) -> None:
        (world.root / CASE / "big.bin").write_bytes(b"x" * 11)
        copy = {"type": "copy", "from": f"{CASE}/big.bin", "to": f"{CASE}/big2.bin"}
        result = dry(world, [copy], limits=Limits(max_copy_bytes=10))
        assert error_codes(result) == ["limit_exceeded"]
        assert result["errors"][0]["operation"] == 0

    def test_copies_of_a_huge_sparse_file_are_refused_by_the_total_before_any_change(
        self, world: World
    ) -> None:
        """Issue 10: a small plan copying one sparse file many times, refused on lstat sizes
        with the default limits, the tree untouched (an apply, not only a dry run)."""
        big = world.root / CASE / "sparse.bin"
        with big.open("wb") as handle:
            handle.truncate(6 << 30)  # 6 GiB, no blocks
        ops = [
            {"type": "copy", "from": f"{CASE}/sparse.bin", "to": f"{CASE}/copy-{i}.bin"}
            for i in range(20)
        ]
        before = sorted(p.name for p in (world.root / CASE).iterdir())  # hashing 6 GiB: no
        result = apply_doc(plan_doc(ops, dry_run=False), world.root, world.state)
        assert result["status"] == "rejected"
        assert error_codes(result) == ["limit_exceeded"]
        assert result["errors"][0]["operation"] == 8  # 9 copies: 54 GiB > 50 GiB
        assert sorted(p.name for p in (world.root / CASE).iterdir()) == before

    def test_writes_count_towards_the_total(self, world: World) -> None:
        ops = [{"type": "write", "path": f"{CASE}/w{i}.txt", "content": "12345"} for i in range(3)]
        result = dry(world, ops, limits=Limits(max_total_bytes=12))
        assert error_codes(result) == ["limit_exceeded"]

    def test_missing_case_folder(self, world: World) -> None:
        ops = [{"type": "mkdir", "path": "Nobody/x"}]
        result = apply_doc(plan_doc(ops, case="Nobody", dry_run=True), world.root, world.state)
        assert error_codes(result) == ["case_missing"]


class TestNoops:
    def test_mkdir_of_an_existing_folder_is_a_noop(self, world: World) -> None:
        result = dry(world, [{"type": "mkdir", "path": f"{CASE}/Investigation"}])
        assert result["status"] == "planned"
        assert result["operations"][0]["outcome"] == "noop"
        assert result["changes"] == []

    def test_move_onto_itself_is_a_noop(self, world: World) -> None:
        path = f"{CASE}/Investigation/report.txt"
        result = dry(world, [{"type": "move", "from": path, "to": path}])
        assert result["operations"][0]["outcome"] == "noop"


class TestUnicode:
    def test_nfc_plan_finds_an_nfd_name_on_disk(self, world: World) -> None:
        nfd = unicodedata.normalize("NFD", "Résumé.pdf")
        (world.case / nfd).write_text("cv")
        result = dry(
            world,
            [{"type": "move", "from": f"{CASE}/Résumé.pdf", "to": f"{CASE}/Investigation/cv.pdf"}],
        )
        assert result["status"] == "planned"
        assert result["changes"][0]["from"] == f"{CASE}/{nfd}"

    def test_two_spellings_on_disk_make_the_name_ambiguous(self, world: World) -> None:
        for form in ("NFC", "NFD"):
            (world.case / unicodedata.normalize(form, "café")).mkdir()
        result = dry(world, [{"type": "write", "path": f"{CASE}/café/x.txt", "content": "x"}])
        assert error_codes(result) == ["path_ambiguous"]


def test_a_folder_cannot_overwrite_the_folder_that_holds_it(world: World) -> None:
    (world.case / "Investigation" / "photos").mkdir()
    result = dry(
        world,
        [
            {
                "type": "move",
                "from": f"{CASE}/Investigation/photos",
                "to": f"{CASE}/Investigation",
                "overwrite": True,
            }
        ],
    )
    assert error_codes(result) == ["move_into_itself"]


class TestObjectNameLimitOfDerivedPaths:
    """A path the plan names may fit GCS's 1,024 bytes while the trash or folder-move target
    the simulation derives from it does not: the plan is refused, not failed mid-apply."""

    def _deep(self, world: World) -> str:
        folder = world.case
        parts = []
        for i, size in enumerate((250, 250, 250, 215)):
            name = f"{i}" + "d" * (size - 1)
            folder = folder / name
            parts.append(name)
        folder.mkdir(parents=True)
        (folder / "f.txt").write_text("x")
        path = "/".join((CASE, *parts, "f.txt"))
        assert 1000 <= len(path.encode()) <= 1010
        return path

    def test_a_trash_target_over_the_limit_is_refused(self, world: World) -> None:
        path = self._deep(world)
        result = dry(world, [{"type": "delete", "path": path}])
        assert result["status"] == "rejected"
        assert [e["code"] for e in result["errors"]] == ["path_invalid"], result["errors"]

    def test_a_folder_move_target_over_the_limit_is_refused(self, world: World) -> None:
        path = self._deep(world)
        top = path.split("/")[1]
        result = dry(
            world,
            [
                {
                    "type": "move",
                    "from": f"{CASE}/{top}",
                    "to": f"{CASE}/{top}-renamed-much-longer-name",
                }
            ],
        )
        assert result["status"] == "rejected"
        assert [e["code"] for e in result["errors"]] == ["path_invalid"], result["errors"]

    def test_a_derived_path_within_the_limit_passes(self, world: World) -> None:
        path = self._deep(world)
        top = path.split("/")[1]
        result = dry(world, [{"type": "move", "from": f"{CASE}/{top}", "to": f"{CASE}/x"}])
        assert result["status"] == "planned", result["errors"]

    def test_a_folder_holding_a_name_that_is_not_utf8_is_measured_not_crashed(
        self, world: World
    ) -> None:
        # os.scandir gives such a name as surrogates; its bytes count, nothing raises.
        folder = world.case / "odd"
        folder.mkdir()
        (world.case / "odd" / "bad\udcff.txt").write_bytes(b"x")
        assert b"bad\xff.txt" in [
            e.name.encode("utf-8", "surrogateescape") for e in folder.iterdir()
        ]
        result = dry(world, [{"type": "delete", "path": f"{CASE}/odd"}])
        assert result["status"] == "planned", result["errors"]
