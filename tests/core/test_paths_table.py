"""The path gate, called directly: ``confine()`` and ``check_case_name()`` on a table of
accepted paths (with the confined form they become) and refused ones (with their code).

tests/test_confinement.py drives the same gate through whole plans on a real tree; this table
pins the lexical rules themselves."""

from __future__ import annotations

import unicodedata

import pytest

from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.contract.limits import GCS_OBJECT_NAME_MAX_BYTES, NAME_MAX_BYTES
from fileops_daemon.core.paths import CasePath, check_case_name, confine

CASE = "Case-A"
CAFE_NFC = "Caf\u00e9"
CAFE_NFD = "Cafe\u0301"
assert unicodedata.normalize("NFC", CAFE_NFD) == CAFE_NFC != CAFE_NFD

INVALID = ErrorCode.PATH_INVALID
OUTSIDE = ErrorCode.PATH_OUTSIDE_CASE
RESERVED = ErrorCode.PATH_RESERVED


def path_of(total_bytes: int) -> str:
    """A path in CASE of exactly ``total_bytes`` ASCII bytes, in names of at most 200."""
    parts = [CASE]
    left = total_bytes - len(CASE)
    while left > 201:
        parts.append("n" * 200)
        left -= 201
    assert left >= 2
    parts.append("n" * (left - 1))
    path = "/".join(parts)
    assert len(path.encode()) == total_bytes
    return path


# (path, case name, the parts below the case folder it confines to)
ACCEPTED: list[tuple[str, str, tuple[str, ...]]] = [
    (f"{CASE}/a", CASE, ("a",)),
    (f"{CASE}/Medical Records/scan 1.pdf", CASE, ("Medical Records", "scan 1.pdf")),
    (f"{CASE}/.hidden", CASE, (".hidden",)),
    (f"{CASE}/...", CASE, ("...",)),
    (f"{CASE}/..a/b..", CASE, ("..a", "b..")),
    (f"{CASE}/fileops", CASE, ("fileops",)),
    (f"{CASE}/.fileops-old", CASE, (".fileops-old",)),
    (f"{CASE}/.fileopsx", CASE, (".fileopsx",)),
    (f"{CASE}/_fileops", CASE, ("_fileops",)),
    # Only the folder right below the case is the daemon's; deeper, the name is the user's.
    (f"{CASE}/a/.fileops", CASE, ("a", ".fileops")),
    (f"{CASE}/{CAFE_NFD}", CASE, (CAFE_NFC,)),
    (f"{CAFE_NFD}/{CAFE_NFD}.txt", CAFE_NFC, (f"{CAFE_NFC}.txt",)),
    (f"{CAFE_NFC}/x", CAFE_NFD, ("x",)),
    (
        f"{CASE}/\u05e9\u05dc\u05d5\u05dd/\u65e5\u672c",
        CASE,
        ("\u05e9\u05dc\u05d5\u05dd", "\u65e5\u672c"),
    ),
    (f"{CASE}/{'a' * NAME_MAX_BYTES}", CASE, ("a" * NAME_MAX_BYTES,)),
    (f"{CASE}/" + "\u00e9" * 127, CASE, ("\u00e9" * 127,)),  # 254 bytes
    (f"{CASE}/no\u00a0break", CASE, ("no\u00a0break",)),  # a no-break space is printable
    # Not a look-alike of .fileops: the dot above the I stays after case folding.
    (f"{CASE}/.F\u0130LEOPS", CASE, (".F\u0130LEOPS",)),
]


@pytest.mark.parametrize(("raw", "case", "parts"), ACCEPTED)
def test_accepted_paths_confine_to_their_nfc_parts_below_the_case(
    raw: str, case: str, parts: tuple[str, ...]
) -> None:
    confined = confine(raw, case)
    assert confined == CasePath(case=unicodedata.normalize("NFC", case), parts=parts)
    assert str(confined) == "/".join((confined.case, *parts))


def test_a_path_of_exactly_the_object_name_limit_is_accepted() -> None:
    raw = path_of(GCS_OBJECT_NAME_MAX_BYTES)
    assert str(confine(raw, CASE)) == raw


# (path, the code it is refused with)
REFUSED: list[tuple[str, ErrorCode]] = [
    # Not a relative path of plain components.
    ("", INVALID),
    ("/", INVALID),
    (f"/{CASE}/a", INVALID),
    (f"//{CASE}/a", INVALID),
    (f"{CASE}//a", INVALID),
    (f"{CASE}/a/", INVALID),
    (f"{CASE}/", INVALID),
    (f"{CASE}/../x", INVALID),
    (f"{CASE}/a/..", INVALID),
    (f"{CASE}/./a", INVALID),
    (f"{CASE}/.", INVALID),
    ("..", INVALID),
    (f"../{CASE}/a", INVALID),
    # Characters that hide or split names.
    (f"{CASE}/a\x00b", INVALID),
    (f"{CASE}/a\nb", INVALID),
    (f"{CASE}/a\rb", INVALID),
    (f"{CASE}/a\tb", INVALID),
    (f"{CASE}/a\x1fb", INVALID),
    (f"{CASE}/a\x7fb", INVALID),
    (f"{CASE}/a\x85b", INVALID),  # C1 next line
    (f"{CASE}/a\x9fb", INVALID),
    (f"{CASE}/invoice\u202efdp.exe", INVALID),  # right-to-left override
    (f"{CASE}/a\u2066b", INVALID),  # left-to-right isolate
    (f"{CASE}/a\u200fb", INVALID),  # right-to-left mark
    (f"{CASE}/a\ud800b", INVALID),  # unpaired surrogate
    # Windows separators and spellings.
    (f"{CASE}\\a", INVALID),
    (f"{CASE}/a\\..\\..\\x", INVALID),
    ("C:\\Windows\\x", INVALID),
    # Too long: a name over NAME_MAX bytes, a path over GCS's object name limit.
    (f"{CASE}/{'a' * (NAME_MAX_BYTES + 1)}", INVALID),
    (f"{CASE}/" + "\u00e9" * 128, INVALID),  # 128 characters, 256 bytes
    (f"{CASE}/" + "\U0001f600" * 64, INVALID),  # 64 characters, 256 bytes
    (path_of(GCS_OBJECT_NAME_MAX_BYTES + 1), INVALID),
    # Outside the case: another case, a look-alike sibling, another spelling of it.
    ("Other-Case/a", OUTSIDE),
    (f"{CASE}-evil/a", OUTSIDE),
    (f"{CASE}evil/a", OUTSIDE),
    (f"{CASE.lower()}/a", OUTSIDE),
    (f"{CASE} /a", OUTSIDE),
    ("\uff23ase-A/a", OUTSIDE),  # fullwidth C: NFKC would fold it, NFC does not
    ("a", OUTSIDE),
    # The case folder itself, and the daemon's own folder with its look-alikes.
    (CASE, RESERVED),
    (f"{CASE}/.fileops", RESERVED),
    (f"{CASE}/.fileops/p-1/trash/x", RESERVED),
    (f"{CASE}/.fileops/staging", RESERVED),
    (f"{CASE}/.FILEOPS", RESERVED),
    (f"{CASE}/.FileOps/x", RESERVED),
    (f"{CASE}/.fileops\u200b", RESERVED),  # zero-width space
    (f"{CASE}/.file\u200dops", RESERVED),  # zero-width joiner inside
    (f"{CASE}/.fileops\ufeff", RESERVED),  # byte order mark
    (f"{CASE}/.fileops\u00ad", RESERVED),  # soft hyphen
    (f"{CASE}/.fileops\ufe0f", RESERVED),  # variation selector
    (f"{CASE}/.\uff46\uff49\uff4c\uff45\uff4f\uff50\uff53", RESERVED),  # fullwidth letters
    (f"{CASE}/\uff0efileops", RESERVED),  # fullwidth full stop
    (f"{CASE}/.\ufb01leops", RESERVED),  # the "fi" ligature
    (f"{CASE}/.fileops\u2060", RESERVED),  # word joiner
]


def _refusal(raw: str, case: str = CASE, **options: object) -> PlanError:
    with pytest.raises(PlanError) as caught:
        confine(raw, case, **options)  # type: ignore[arg-type]
    return caught.value


@pytest.mark.parametrize(("raw", "code"), REFUSED)
def test_refused_paths_name_their_code_and_the_path_as_given(raw: str, code: ErrorCode) -> None:
    error = _refusal(raw)
    assert error.code is code, error.message
    assert error.path == raw


def test_a_refusal_names_the_operation_it_concerns() -> None:
    assert _refusal(f"{CASE}/../x", operation=7).operation == 7
    assert _refusal(f"{CASE}/../x").operation is None


class TestTheTrashOfAnUndo:
    """An undo plan may name paths in the trash of the plan it undoes, and nothing else of
    the daemon's folder."""

    def test_a_path_in_that_plans_trash_is_accepted(self) -> None:
        confined = confine(f"{CASE}/.fileops/p-1/trash/0/a.pdf", CASE, trash_of="p-1")
        assert confined.parts == (".fileops", "p-1", "trash", "0", "a.pdf")

    @pytest.mark.parametrize(
        "raw",
        [
            f"{CASE}/.fileops/p-1/trash",  # the trash folder itself
            f"{CASE}/.fileops/p-1",
            f"{CASE}/.fileops",
            f"{CASE}/.fileops/p-2/trash/a",  # another plan's trash
            f"{CASE}/.fileops/p-1/staging/a",
            f"{CASE}/.FILEOPS/p-1/trash/a",  # a look-alike is never the trash
        ],
    )
    def test_anything_else_of_the_daemons_folder_stays_reserved(self, raw: str) -> None:
        assert _refusal(raw, trash_of="p-1").code is RESERVED


# (case name, its normal form) and (case name, refused)
CASE_NAMES_ACCEPTED = [
    (CASE, CASE),
    ("Abby Sitgraves MVA 07-13-2024", "Abby Sitgraves MVA 07-13-2024"),
    (CAFE_NFD, CAFE_NFC),
    ("a" * NAME_MAX_BYTES, "a" * NAME_MAX_BYTES),
    ("a..", "a.."),
]
CASE_NAMES_REFUSED = [
    "",
    ".hidden",
    ".",
    "..",
    "..a",
    ".fileops",
    "a/b",
    "/a",
    "a/",
    "a\\b",
    "a\x00",
    "a\nb",
    "a\u202eb",
    "a\ud800",
    "a" * (NAME_MAX_BYTES + 1),
    "\u00e9" * 128,
]


@pytest.mark.parametrize(("name", "normal"), CASE_NAMES_ACCEPTED)
def test_a_case_name_is_one_plain_folder_name_returned_in_nfc(name: str, normal: str) -> None:
    assert check_case_name(name) == normal


@pytest.mark.parametrize("name", CASE_NAMES_REFUSED)
def test_other_case_names_are_refused_as_invalid(name: str) -> None:
    with pytest.raises(PlanError) as caught:
        check_case_name(name)
    assert caught.value.code is INVALID
    assert caught.value.path == name
