"""Daemon configuration: one frozen object, built once from the environment."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from fileops_daemon.contract.envvars import ConfigError, env_float, env_int, project_from_env
from fileops_daemon.contract.limits import Limits
from fileops_daemon.contract.signing import load_key
from fileops_daemon.core.pacing import StepPacer
from fileops_daemon.service.approval_policy import ApprovalPolicy

__all__ = ["Config", "ConfigError"]


def _signing_keys(env: Mapping[str, str]) -> list[bytes]:
    """The HMAC keys plans must carry. An empty ``FILEOPS_SIGNING_KEY_FILE=`` is a mistake (a
    blanked line must not open the daemon), and FILEOPS_REQUIRE_SIGNING=1 demands a key."""
    require = env.get("FILEOPS_REQUIRE_SIGNING", "0").strip().lower()
    if require not in ("0", "1", "true", "false", "yes", "no", ""):
        raise ConfigError(f"FILEOPS_REQUIRE_SIGNING must be 1 or 0, got {require!r}")
    if "FILEOPS_SIGNING_KEY_FILE" in env and not env["FILEOPS_SIGNING_KEY_FILE"].strip():
        raise ConfigError(
            "FILEOPS_SIGNING_KEY_FILE is set but empty; name the key file, or remove the line "
            "to run without signed plans"
        )
    keys = []
    for name in ("FILEOPS_SIGNING_KEY_FILE", "FILEOPS_SIGNING_KEY_FILE_PREVIOUS"):
        if env.get(name):
            try:
                keys.append(load_key(env[name]))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{name}: {exc}") from None
    if require in ("1", "true", "yes") and not env.get("FILEOPS_SIGNING_KEY_FILE"):
        raise ConfigError(
            "FILEOPS_REQUIRE_SIGNING is on but FILEOPS_SIGNING_KEY_FILE is not set; "
            "refusing to accept unsigned plans"
        )
    return keys


#: The values of FILEOPS_EXECUTOR.
EXECUTORS = ("gcsfuse", "gcs-api")


@dataclass(frozen=True)
class Config:
    """Everything the daemon and the bootstrap need (the table in docs/daemon.md lists it)."""

    project: str
    state_bucket: str
    audit_bucket: str
    plans_topic: str = "fileops-plans"
    plans_subscription: str = "fileops-plans-daemon"
    results_topic: str = "fileops-results"
    dead_letter_topic: str = "fileops-plans-dead-letter"
    projects_root: str = "/projects"
    #: How steps reach the case folders: "gcsfuse" (the mount at projects_root) or "gcs-api"
    #: (objects of projects_bucket through the JSON API; no mount needed).
    executor: str = "gcsfuse"
    projects_bucket: str = ""
    state_dir: str = "/var/lib/fileops"
    limits: Limits = field(default_factory=Limits)
    concurrency: int = 4
    #: File steps of one plan run at once (each is a network round trip on gcsfuse).
    apply_parallelism: int = 8
    #: Cap on file steps started per second by this daemon, all plans together; 0 = no cap.
    apply_max_steps_per_second: float = 0.0
    flow_max_messages: int = 8
    flow_max_bytes: int = 64 << 20
    lease_seconds: float = 120.0
    ack_deadline_seconds: int = 60
    max_delivery_attempts: int = 5
    drain_seconds: float = 60.0
    retry_attempts: int = 6
    retry_initial_wait: float = 0.5
    retry_max_wait: float = 10.0
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    log_json: bool = True
    log_level: str = "INFO"
    #: HMAC keys plans must be signed with (current first); empty: plans are not authenticated.
    signing_keys: tuple[bytes, ...] = field(default=(), repr=False)
    #: Localhost port of /metrics and /healthz; 0 = off.
    metrics_port: int = 0
    #: Which plans wait for an operator's approval (off by default).
    approval: ApprovalPolicy = field(default_factory=ApprovalPolicy)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        project = project_from_env(env)
        state_bucket = env.get("FILEOPS_STATE_BUCKET")
        if not state_bucket:
            raise ConfigError("FILEOPS_STATE_BUCKET is required")
        concurrency = env_int(env, "FILEOPS_CONCURRENCY", 4)
        defaults = cls(project=project, state_bucket=state_bucket, audit_bucket=state_bucket)
        limits = Limits.from_env(env)
        steps_per_second = env_float(
            env, "FILEOPS_APPLY_MAX_STEPS_PER_SECOND", defaults.apply_max_steps_per_second
        )
        try:
            StepPacer(steps_per_second)
        except ValueError as exc:
            raise ConfigError(f"FILEOPS_APPLY_MAX_STEPS_PER_SECOND: {exc}") from None
        keys = _signing_keys(env)
        executor = env.get("FILEOPS_EXECUTOR") or defaults.executor
        if executor not in EXECUTORS:
            raise ConfigError(f"FILEOPS_EXECUTOR must be gcsfuse or gcs-api, got {executor!r}")
        projects_bucket = env.get("FILEOPS_PROJECTS_BUCKET", "")
        if executor == "gcs-api" and not projects_bucket:
            raise ConfigError("FILEOPS_EXECUTOR=gcs-api needs FILEOPS_PROJECTS_BUCKET")
        objects_move = env.get("FILEOPS_GCS_OBJECTS_MOVE", "auto").strip().lower()
        if objects_move not in ("auto", "off"):  # read by gcs/bucket.py: refused here, at start
            raise ConfigError(f"FILEOPS_GCS_OBJECTS_MOVE must be auto or off, got {objects_move!r}")
        audit_bucket = env.get("FILEOPS_AUDIT_BUCKET") or state_bucket
        projects_root = env.get("FILEOPS_PROJECTS_ROOT") or defaults.projects_root
        _refuse_shared_bucket(
            projects_bucket or mounted_bucket(projects_root), state_bucket, audit_bucket
        )
        log_format = env.get("FILEOPS_LOG_FORMAT", "json")
        if log_format not in ("json", "console"):
            raise ConfigError(f"FILEOPS_LOG_FORMAT must be json or console, got {log_format!r}")
        return cls(
            project=project,
            state_bucket=state_bucket,
            audit_bucket=audit_bucket,
            plans_topic=env.get("FILEOPS_PLANS_TOPIC") or defaults.plans_topic,
            plans_subscription=env.get("FILEOPS_PLANS_SUBSCRIPTION") or defaults.plans_subscription,
            results_topic=env.get("FILEOPS_RESULTS_TOPIC") or defaults.results_topic,
            dead_letter_topic=env.get("FILEOPS_DEAD_LETTER_TOPIC") or defaults.dead_letter_topic,
            projects_root=projects_root,
            executor=executor,
            projects_bucket=projects_bucket,
            state_dir=env.get("FILEOPS_STATE_DIR") or defaults.state_dir,
            limits=limits,
            concurrency=concurrency,
            apply_parallelism=env_int(env, "FILEOPS_APPLY_PARALLELISM", defaults.apply_parallelism),
            apply_max_steps_per_second=steps_per_second,
            flow_max_messages=env_int(env, "FILEOPS_FLOW_MAX_MESSAGES", concurrency * 2),
            flow_max_bytes=env_int(env, "FILEOPS_FLOW_MAX_BYTES", defaults.flow_max_bytes),
            lease_seconds=env_float(env, "FILEOPS_LEASE_SECONDS", defaults.lease_seconds),
            ack_deadline_seconds=env_int(  # Pub/Sub's own bounds
                env,
                "FILEOPS_ACK_DEADLINE_SECONDS",
                defaults.ack_deadline_seconds,
                minimum=10,
                maximum=600,
            ),
            max_delivery_attempts=env_int(
                env, "FILEOPS_MAX_DELIVERY_ATTEMPTS", defaults.max_delivery_attempts, minimum=5
            ),
            drain_seconds=env_float(env, "FILEOPS_DRAIN_SECONDS", defaults.drain_seconds),
            retry_attempts=env_int(env, "FILEOPS_RETRY_ATTEMPTS", defaults.retry_attempts),
            retry_initial_wait=env_float(
                env, "FILEOPS_RETRY_INITIAL_WAIT", defaults.retry_initial_wait
            ),
            retry_max_wait=env_float(env, "FILEOPS_RETRY_MAX_WAIT", defaults.retry_max_wait),
            worker_id=env.get("FILEOPS_WORKER_ID") or defaults.worker_id,
            log_json=log_format == "json",
            log_level=env.get("FILEOPS_LOG_LEVEL", "INFO").upper(),
            signing_keys=tuple(keys),
            metrics_port=env_int(env, "FILEOPS_METRICS_PORT", 0, minimum=0),
            approval=ApprovalPolicy.from_env(env),
        )

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, subscription: str) -> str:
        return f"projects/{self.project}/subscriptions/{subscription}"


def mounted_bucket(projects_root: str, mounts: str = "/proc/self/mounts") -> str:
    """The bucket gcsfuse mounts at ``projects_root``, or "" (not a gcsfuse mount, or
    unknown)."""
    target = os.path.realpath(projects_root)
    try:
        with open(mounts, encoding="utf-8") as lines:
            for line in lines:
                fields = line.split()
                if len(fields) >= 3 and fields[1] == target and fields[2] == "fuse.gcsfuse":
                    return fields[0]
    except OSError:
        pass
    return ""


def _refuse_shared_bucket(projects_bucket: str, state_bucket: str, audit_bucket: str) -> None:
    """The agents' plans change the projects bucket: were it the state or the audit bucket,
    a plan could rewrite the ledger, the approvals or the audit trail."""
    for name, bucket in (
        ("FILEOPS_STATE_BUCKET", state_bucket),
        ("FILEOPS_AUDIT_BUCKET", audit_bucket),
    ):
        if projects_bucket and projects_bucket == bucket:
            raise ConfigError(
                f"the projects bucket {projects_bucket!r} is also {name}: plans could then "
                "change the daemon's own records; use separate buckets. Refusing to start"
            )
