"""The results the console shows from before it started: the newest answers in the audit
bucket (``YYYY/MM/DD/<plan_id>/<message_id>.json``, one per answered message), so the results
page is not empty after a restart. Today's and yesterday's folders (UTC) are listed; only the
newest ``limit`` records are read, none over ``max_bytes`` (a record keeps the whole plan)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

__all__ = ["Audited", "recent_audited"]

log = structlog.get_logger("fileops.console")

#: The most audit records listed per day folder (a day's listing is read whole to find the
#: newest: past this many the page shows the newest of the first ones listed).
MAX_LISTED = 20_000
#: (connect, read) seconds for one request.
TIMEOUT = (5.0, 20.0)


@dataclass(frozen=True)
class Audited:
    at: float  # when the audit record was written
    result: dict[str, Any]


def day_prefixes(now: float, days: int = 2) -> list[str]:
    today = datetime.fromtimestamp(now, UTC)
    return [f"{today - timedelta(days=back):%Y/%m/%d}/" for back in range(days)]


def recent_audited(
    bucket: Any,
    now: float,
    *,
    limit: int = 200,
    max_bytes: int = 1 << 20,
    threads: int = 8,
) -> list[Audited]:
    """The newest ``limit`` audited results (oldest first) from ``bucket``, a
    google.cloud.storage Bucket. A record that cannot be read or parsed is skipped and
    logged: the page is a view, the audit bucket stays the record."""
    listed: list[Any] = []
    for prefix in day_prefixes(now):
        # Bounded: one try each (an unreachable GCS is said once, in the log, not retried
        # for minutes), and at most MAX_LISTED records a day on a very busy bucket.
        listed.extend(
            bucket.list_blobs(prefix=prefix, max_results=MAX_LISTED, retry=None, timeout=TIMEOUT)
        )
    small = [blob for blob in listed if (blob.size or 0) <= max_bytes]
    skipped = len(listed) - len(small)
    newest = sorted(small, key=_written, reverse=True)[:limit]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        found = list(pool.map(_parse, newest))
    audited = [item for item in found if item is not None]
    log.info(
        "console.results_backfilled",
        listed=len(listed),
        shown=len(audited),
        too_large=skipped,
        unreadable=len(found) - len(audited),
    )
    return sorted(audited, key=lambda item: item.at)


def _written(blob: Any) -> float:
    updated = blob.updated
    return updated.timestamp() if updated is not None else 0.0


def _parse(blob: Any) -> Audited | None:
    try:
        record = json.loads(blob.download_as_bytes(retry=None, timeout=TIMEOUT))
    except Exception as exc:  # gone meanwhile, a transient error, not JSON: skip it
        log.warning("console.audit_unreadable", object=blob.name, error=str(exc)[:200])
        return None
    result = record.get("result") if isinstance(record, dict) else None
    if not isinstance(result, dict) or not isinstance(result.get("status"), str):
        return None
    return Audited(_written(blob), result)
