"""Which generation preconditions fake-gcs-server honours (pinned, so a change shows).

GCS honours all of them; fake-gcs-server only those on uploads. The GCS-API executor's tests
therefore run behind ``LatencyProxy(enforce_preconditions=True)``, which answers 412 where GCS
would; this file also proves that proxy refuses exactly what GCS refuses.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import pytest
from google.api_core import exceptions as gexc
from google.cloud import storage

from tests.emulators.latency_proxy import LatencyProxy
from tests.gcs.support import Bucket, client


def refused(action: Callable[[], object]) -> bool:
    try:
        action()
    except gexc.PreconditionFailed:
        return True
    return False


def cases(bucket: storage.Bucket) -> dict[str, Callable[[], object]]:
    """Each request with a precondition that does not hold."""
    for name in ("a", "taken"):
        bucket.blob(name).upload_from_string(name.encode())
    source = bucket.get_blob("a")
    assert source is not None and source.generation is not None
    stale = int(source.generation) + 1
    return {
        "upload onto an existing object (ifGenerationMatch=0)": lambda: bucket.blob(
            "taken"
        ).upload_from_string(b"x", if_generation_match=0),
        "rewrite onto an existing object (ifGenerationMatch=0)": lambda: bucket.blob(
            "taken"
        ).rewrite(source, if_generation_match=0),
        "rewrite from a stale source generation": lambda: bucket.blob("new1").rewrite(
            source, if_source_generation_match=stale
        ),
        "download of a stale generation": lambda: bucket.blob("a").download_as_bytes(
            if_generation_match=stale
        ),
        "delete of a stale generation": lambda: bucket.blob("a").delete(if_generation_match=stale),
    }


@pytest.mark.parametrize("through_proxy", [False, True], ids=["fake-gcs-server", "proxy"])
def test_which_preconditions_are_honoured(
    bucket: Bucket, proxy: LatencyProxy, through_proxy: bool
) -> None:
    endpoint = proxy.endpoint if through_proxy else bucket.server
    honoured = {
        name: refused(action)
        for name, action in cases(client(endpoint).bucket(bucket.name)).items()
    }
    if through_proxy:
        assert all(honoured.values()), honoured
    else:  # fake-gcs-server v1.56.1: uploads only
        assert honoured == {
            "upload onto an existing object (ifGenerationMatch=0)": True,
            "rewrite onto an existing object (ifGenerationMatch=0)": False,
            "rewrite from a stale source generation": False,
            "download of a stale generation": False,
            "delete of a stale generation": False,
        }


def test_the_proxy_lets_a_request_whose_preconditions_hold_through(
    bucket: Bucket, proxy: LatencyProxy
) -> None:
    direct = client(proxy.endpoint).bucket(bucket.name)
    direct.blob("a").upload_from_string(b"content")
    source = direct.get_blob("a")
    assert source is not None
    direct.blob("b").rewrite(
        source, if_generation_match=0, if_source_generation_match=source.generation
    )
    direct.blob("a").delete(if_generation_match=source.generation)
    assert sorted(blob.name for blob in client(bucket.server).list_blobs(bucket.name)) == ["b"]


#: A local googleapis/storage-testbench (``http://HOST:PORT``): the same cases run against it.
TESTBENCH = os.environ.get("FILEOPS_STORAGE_TESTBENCH", "")


def move_cases(bucket: storage.Bucket) -> dict[str, Callable[[], object]]:
    """``objects.move`` requests GCS refuses: 412 for a failed precondition, 404 without a
    source."""
    for name in ("m", "taken"):
        bucket.blob(name).upload_from_string(name.encode())
    source = bucket.get_blob("m")
    assert source is not None and source.generation is not None
    stale = int(source.generation) + 1
    return {
        "move onto an existing object (ifGenerationMatch=0)": lambda: bucket.move_blob(
            bucket.blob("m"), "taken", if_generation_match=0, retry=None
        ),
        "move from a stale source generation": lambda: bucket.move_blob(
            bucket.blob("m"), "new2", if_source_generation_match=stale, retry=None
        ),
    }


def answer(action: Callable[[], object]) -> str:
    try:
        action()
    except gexc.GoogleAPICallError as exc:
        return type(exc).__name__
    return "done"


def test_the_proxy_answers_objects_move_as_gcs_does(bucket: Bucket, proxy: LatencyProxy) -> None:
    through = client(proxy.endpoint).bucket(bucket.name)
    answers = {name: answer(action) for name, action in move_cases(through).items()}
    answers["move of a missing object"] = answer(
        lambda: through.move_blob(through.blob("nobody"), "x", retry=None)
    )
    assert answers == {
        "move onto an existing object (ifGenerationMatch=0)": "PreconditionFailed",
        "move from a stale source generation": "PreconditionFailed",
        "move of a missing object": "NotFound",
    }
    source = through.get_blob("m")
    assert source is not None
    moved = through.move_blob(
        through.blob("m"),
        "moved",
        if_generation_match=0,
        if_source_generation_match=source.generation,
        retry=None,
    )
    names = sorted(blob.name for blob in client(bucket.server).list_blobs(bucket.name))
    assert names == ["moved", "taken"]  # the source is gone, nothing else changed
    assert moved.generation is not None and moved.generation != source.generation
    assert client(bucket.server).bucket(bucket.name).blob("moved").download_as_bytes() == b"m"
    # fake-gcs-server itself has no objects.move: it takes the request for a malformed upload
    direct = client(bucket.server).bucket(bucket.name)
    assert answer(lambda: direct.move_blob(direct.blob("moved"), "again", retry=None)) == (
        "BadRequest"
    )


@pytest.mark.skipif(not TESTBENCH, reason="set FILEOPS_STORAGE_TESTBENCH to a local testbench")
def test_the_testbench_refuses_what_the_proxy_refuses(bucket: Bucket, proxy: LatencyProxy) -> None:
    bench = client(TESTBENCH)
    name = f"pin-{uuid.uuid4().hex[:10]}"
    bench.create_bucket(name)
    on_bench = bench.bucket(name)
    through = client(proxy.endpoint).bucket(bucket.name)
    for built in (cases, move_cases):
        expected = {case: answer(action) for case, action in built(through).items()}
        assert {case: answer(action) for case, action in built(on_bench).items()} == expected
    assert answer(lambda: on_bench.move_blob(on_bench.blob("nobody"), "x", retry=None)) == (
        "NotFound"
    )
