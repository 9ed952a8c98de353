"""fake-gcs-server once per module, a proxy and a fresh bucket per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulators import harness
from tests.emulators.latency_proxy import LatencyProxy, latency_proxy
from tests.gcs.support import Bucket, new_bucket


@pytest.fixture(scope="module")
def gcs_server() -> Iterator[str]:
    with harness.gcs_emulator() as endpoint:
        yield endpoint


@pytest.fixture
def proxy(gcs_server: str) -> Iterator[LatencyProxy]:
    with latency_proxy(gcs_server, 0) as serving:
        serving.enforce_preconditions = True  # what GCS does and fake-gcs-server does not
        serving.serve_move = True  # objects.move, which fake-gcs-server lacks
        yield serving


@pytest.fixture
def bucket(gcs_server: str, proxy: LatencyProxy, tmp_path: Path) -> Bucket:
    return new_bucket(gcs_server, proxy, tmp_path / "state")
