"""The generation that was checked is the generation that moves: through the JSON API a step
acts only on the object generation the simulation listed (no per-move read), with
``objects.move`` where the bucket has it and copy + delete where it has not; and a passing
fault on any request, the listing that opens the case included, is retried and, when the
retries run out, reported as ``io_error``, never as a change of the tree."""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from fileops_daemon.core.outcome import RunEnd
from tests.emulators.latency_proxy import RESET, LatencyProxy
from tests.gcs.support import Bucket
from tests.support import CASE, plan_doc

ORIGINAL = b"the scan the agent saw"
SOURCE = f"{CASE}/in/x.pdf"
MOVES = pytest.mark.parametrize("objects_move", [True, False], ids=["objects.move", "copy+delete"])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class AfterTheCheck:
    """A checkpoint: ``journal_created`` runs after the simulation, before the first step."""

    def __init__(self, act: Callable[[], None]) -> None:
        self.act = act

    def journal_created(self, header_line: bytes) -> None:
        self.act()

    def journal_synced(self, summary: dict[str, Any]) -> None:
        pass


def expect_operation(kind: str, expect: dict[str, Any]) -> dict[str, Any]:
    if kind == "delete":
        return {"type": "delete", "path": SOURCE, "expect": expect}
    return {"type": kind, "from": SOURCE, "to": f"{CASE}/out/x.pdf", "expect": expect}


@MOVES
@pytest.mark.parametrize("kind", ["move", "copy", "delete"])
@pytest.mark.parametrize(
    ("expect", "edited"),
    [
        ({"size": len(ORIGINAL), "sha256": sha(ORIGINAL)}, b"the scan someone else "),
        ({"size": len(ORIGINAL)}, ORIGINAL + b", and more"),
    ],
    ids=["same-size-other-bytes", "grew"],
)
def test_a_source_replaced_between_check_and_step_is_refused_untouched(
    bucket: Bucket,
    proxy: LatencyProxy,
    objects_move: bool,
    kind: str,
    expect: dict[str, Any],
    edited: bytes,
) -> None:
    assert len(edited) == len(ORIGINAL) or "sha256" not in expect
    proxy.serve_move = objects_move
    bucket.seed({SOURCE: ORIGINAL, f"{CASE}/keep.txt": b"k"}, folders=(f"{CASE}/out",))
    before = bucket.tree()

    def replace() -> None:
        bucket.direct.blob(SOURCE).upload_from_string(edited)

    plan = plan_doc([expect_operation(kind, expect)], plan_id=f"race-{kind}")
    outcome = bucket.apply(plan, checkpoint=AfterTheCheck(replace))

    assert outcome.end is RunEnd.ROLLED_BACK, outcome.result
    assert [e["code"] for e in outcome.result["errors"]] == ["precondition_failed"]
    after = {k: v for k, v in bucket.tree().items() if "/.fileops" not in k}
    assert after == dict(before, **{SOURCE: ("file", sha(edited))})  # theirs, where it was


@MOVES
def test_each_move_is_one_request_or_two_and_reads_no_source(
    bucket: Bucket, proxy: LatencyProxy, objects_move: bool
) -> None:
    proxy.serve_move = objects_move
    count = 100
    files = {f"{CASE}/inbox/f{i:03}.pdf": f"file {i}".encode() for i in range(count)}
    bucket.seed(files, folders=(f"{CASE}/sorted",))
    ops = [
        {"type": "move", "from": name, "to": name.replace("/inbox/", "/sorted/")} for name in files
    ]
    proxy.reset()
    outcome = bucket.apply(plan_doc(ops, plan_id="per-move"), parallelism=16)
    assert outcome.end is RunEnd.APPLIED, outcome.result["errors"]

    counts = proxy.snapshot()
    per_move = sum(counts.values()) / count
    object_reads = [
        path
        for method, path in proxy.log
        if method == "GET" and "/o/" in path and "/inbox/" in urllib.parse.unquote(path)
    ]
    # The generation comes from the simulation's listing; the only read of a source is the
    # one that tells a bucket without objects.move from a missing source, once.
    assert len(object_reads) == (0 if objects_move else 1), object_reads
    if objects_move:
        assert counts.get("POST move") == count, counts
        assert "POST rewrite" not in counts, counts
        assert per_move <= 1.2, counts
    else:
        assert counts.get("POST move") == 1, counts  # asked once for the bucket, then not
        assert counts.get("POST rewrite") == count, counts
        assert per_move <= 2.2, counts
    moved = {k for k in bucket.tree() if k.startswith(f"{CASE}/sorted/")}
    assert moved == {name.replace("/inbox/", "/sorted/") for name in files}


def fail_listing(proxy: LatencyProxy, nth: int, how: int, *, times: int = 1) -> list[str]:
    """Answer the ``nth`` and the next ``times - 1`` one-item listings of the case folder
    (what finds the case, then what opens it for the steps) with ``how``."""
    seen: list[str] = []

    def answer(method: str, path: str) -> int | None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        if method != "GET" or query.get("prefix") != [f"{CASE}/"]:
            return None
        if query.get("maxResults") != ["1"]:
            return None
        seen.append(path)
        return how if nth <= len(seen) < nth + times else None

    proxy.answer = answer
    return seen


@pytest.mark.parametrize("how", [503, RESET], ids=["503", "reset"])
@pytest.mark.parametrize("nth", [1, 2], ids=["finding-the-case", "opening-the-case"])
def test_one_fault_on_the_listing_that_opens_the_case_is_retried(
    bucket: Bucket, proxy: LatencyProxy, how: int, nth: int
) -> None:
    bucket.seed({SOURCE: ORIGINAL}, folders=(f"{CASE}/out",))
    seen = fail_listing(proxy, nth, how)
    ops = [{"type": "move", "from": SOURCE, "to": f"{CASE}/out/x.pdf"}]
    outcome = bucket.apply(plan_doc(ops, plan_id=f"fault-{nth}-{how}"))
    assert outcome.end is RunEnd.APPLIED, outcome.result
    assert len(seen) >= nth + 1  # the fault was met, and the listing asked again
    assert f"{CASE}/out/x.pdf" in bucket.tree()


@pytest.mark.parametrize("how", [503, RESET], ids=["503", "reset"])
def test_a_fault_that_outlasts_the_retries_is_an_io_error_naming_gcs(
    bucket: Bucket, proxy: LatencyProxy, how: int
) -> None:
    bucket.seed({SOURCE: ORIGINAL}, folders=(f"{CASE}/out",))
    before = bucket.tree()
    fail_listing(proxy, 2, how, times=1000)
    ops = [{"type": "move", "from": SOURCE, "to": f"{CASE}/out/x.pdf"}]
    outcome = bucket.apply(plan_doc(ops, plan_id=f"outage-{how}"))
    assert outcome.end is RunEnd.ROLLBACK_INCOMPLETE  # nothing stored: a rerun tries again
    [error] = outcome.result["errors"]
    assert error["code"] == "io_error", error
    assert "GCS" in error["message"], error
    assert bucket.tree() == before

    proxy.answer = None
    again = bucket.apply(plan_doc(ops, plan_id=f"outage-{how}"))
    assert again.end is RunEnd.APPLIED, again.result
