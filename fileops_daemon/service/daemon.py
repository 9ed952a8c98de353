"""``fileops run`` and ``fileops bootstrap``: process-level concerns (signals, exit codes)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from types import FrameType

import structlog

from fileops_daemon.logs import configure_logging
from fileops_daemon.service.config import Config, ConfigError
from fileops_daemon.service.metrics import Metrics, serve_metrics
from fileops_daemon.service.notify import Notifier

__all__ = ["bootstrap_command", "filesystem_of", "run_daemon"]

log = structlog.get_logger("fileops.daemon")


def _config() -> Config | None:
    try:
        return Config.from_env()
    except ConfigError as exc:
        print(f"fileops: configuration: {exc}", file=sys.stderr)
        return None


def filesystem_of(path: str) -> str:
    """The type of the filesystem holding ``path`` (``fuse.gcsfuse`` on the production mount,
    ``ext4`` and the like on a plain folder; ``unknown`` where /proc/self/mountinfo is not)."""
    target = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mounts:
            for line in mounts:
                fields, _, rest = line.partition(" - ")
                point = fields.split(" ")[4].replace("\\040", " ")
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best) and rest.split(" "):
                    best, kind = point, rest.split(" ")[0]
    except (OSError, IndexError):
        return "unknown"
    return kind


def bootstrap_command() -> int:
    from fileops_daemon.contract.exitcodes import EXIT_CONFIG, EXIT_OK
    from fileops_daemon.service.bootstrap import bootstrap

    config = _config()
    if config is None:
        return EXIT_CONFIG
    configure_logging(json_output=config.log_json, level=config.log_level)
    print(json.dumps(bootstrap(config)))
    return EXIT_OK


def run_daemon() -> int:
    """Run until SIGTERM/SIGINT; the first one drains, a second one forces."""
    from fileops_daemon.contract.exitcodes import (
        EXIT_CONFIG,
        EXIT_FORCED,
        EXIT_OK,
        EXIT_STREAM_LOST,
    )
    from fileops_daemon.service.wiring import build_consumer

    config = _config()
    if config is None:
        return EXIT_CONFIG
    configure_logging(json_output=config.log_json, level=config.log_level)
    if config.executor == "gcsfuse" and not os.path.isdir(config.projects_root):
        print(f"fileops: configuration: {config.projects_root} is not a folder", file=sys.stderr)
        return EXIT_CONFIG
    os.makedirs(config.state_dir, exist_ok=True)

    stop = threading.Event()
    signals_seen = 0

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            log.warning("daemon.forced_stop", signal=signal.Signals(signum).name)
            os._exit(EXIT_FORCED)  # journals make whatever was in flight resumable
        log.info("daemon.stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if not config.signing_keys:
        log.warning(
            "daemon.plans_not_authenticated",
            hint="set FILEOPS_SIGNING_KEY_FILE to refuse plans not signed with the shared key",
        )
    metrics = Metrics()
    notifier = Notifier()
    tick = min(1.0, notifier.watchdog_interval or 1.0)
    consumer = build_consumer(config, metrics)
    consumer.start()
    if config.metrics_port:
        server = serve_metrics(
            metrics,
            config.metrics_port,
            healthy=lambda: consumer.running() and metrics.loop_is_fresh(max(10.0, 5 * tick)),
        )
        log.info("daemon.metrics", address=f"http://127.0.0.1:{server.server_address[1]}")
    notifier.notify("READY=1", f"STATUS=pulling {config.plans_subscription}")
    log.info(
        "daemon.ready",
        worker=config.worker_id,
        projects_root=config.projects_root,
        executor=config.executor,
        # What the executor really works on: gcsfuse's steps on a plain folder (make run,
        # or /projects not mounted) say so here.
        projects_filesystem=(
            filesystem_of(config.projects_root) if config.executor == "gcsfuse" else None
        ),
        projects_bucket=config.projects_bucket or None,
        subscription=config.plans_subscription,
        systemd=notifier.enabled,
    )
    while not stop.is_set():
        stop.wait(tick)
        if not consumer.running():
            log.error("daemon.stream_lost")
            notifier.notify("STOPPING=1", "STATUS=the pull stream ended")
            consumer.stop(config.drain_seconds)
            return EXIT_STREAM_LOST
        metrics.tick()
        notifier.notify("WATCHDOG=1")  # the loop is alive and the stream is up
    notifier.notify("STOPPING=1", f"STATUS=draining {consumer.in_flight} plan(s)")
    drained = consumer.stop(config.drain_seconds)
    log.info("daemon.exit", drained=drained, in_flight=consumer.in_flight)
    if not drained:
        # Plans still running stay unacked and journaled; the next daemon resumes them.
        # os._exit: the worker pool would otherwise hold the process open until they end.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_OK)
    return EXIT_OK
