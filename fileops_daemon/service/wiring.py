"""Wires the daemon together from a Config: clients, ledger, outputs, handler, consumer."""

from __future__ import annotations

from google.cloud import pubsub_v1

from fileops_daemon.core.volume import LocalVolume, Volume
from fileops_daemon.gcs import GcsVolume
from fileops_daemon.service.approval import ApprovalDesk, DecisionStore
from fileops_daemon.service.cloud import CloudRetry, storage_client
from fileops_daemon.service.config import Config
from fileops_daemon.service.consumer import Consumer
from fileops_daemon.service.handler import PlanHandler
from fileops_daemon.service.ledger import Ledger
from fileops_daemon.service.ledger_store import GcsLedgerStore
from fileops_daemon.service.metrics import Metrics
from fileops_daemon.service.outputs import AuditLog, ResultPublisher

__all__ = ["build_consumer"]


def _volume(config: Config) -> Volume:
    """The mount at projects_root, or the bucket through the JSON API (FILEOPS_EXECUTOR)."""
    if config.executor == "gcs-api":
        return GcsVolume(config.projects_bucket, lambda: storage_client(config.project))
    return LocalVolume(config.projects_root)


def build_consumer(config: Config, metrics: Metrics) -> Consumer:
    retry = CloudRetry(config.retry_attempts, config.retry_initial_wait, config.retry_max_wait)
    storage = storage_client(config.project)
    state = storage.bucket(config.state_bucket)
    ledger = Ledger(GcsLedgerStore(state, retry), config.worker_id, config.lease_seconds)
    results = ResultPublisher(
        pubsub_v1.PublisherClient(), config.topic_path(config.results_topic), retry
    )
    audit = AuditLog(storage.bucket(config.audit_bucket), retry)
    volume = _volume(config)
    approvals = ApprovalDesk(
        config.approval,
        ledger,
        DecisionStore(ledger.store, state, retry),
        GcsLedgerStore(storage.bucket(config.audit_bucket), retry),
        projects_root=config.projects_root,
        limits=config.limits,
        clock=ledger.clock,
        volume=volume,
    )
    handler = PlanHandler(config, ledger, results, audit, metrics, approvals, volume)
    return Consumer(config, handler, pubsub_v1.SubscriberClient(), metrics)
