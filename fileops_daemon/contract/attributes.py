"""Pub/Sub message attribute names: what plans and results carry beside their JSON body.

Attributes route and filter messages (subscription filters, ordering, replies); the body is
the document. A plan's attributes must agree with its body, and a v2 signature covers them.
"""

from __future__ import annotations

__all__ = [
    "CASE_NAME",
    "CLIENT_ID",
    "DRY_RUN",
    "IN_REPLY_TO",
    "PLAN_ATTRIBUTES",
    "PLAN_ID",
    "SIGNATURE",
    "STATUS",
]

PLAN_ID = "plan_id"
CASE_NAME = "case_name"
DRY_RUN = "dry_run"  # "true" or "false", as the plan says
#: The publishing client's name; the daemon copies it onto the result so a client can
#: subscribe to its own results only.
CLIENT_ID = "client_id"
SIGNATURE = "signature"  # "v1=<hex>" (body) or "v2=<hex>" (body and PLAN_ATTRIBUTES)
STATUS = "status"  # results only: the result's status
#: Results only: the Pub/Sub message id of the plan message answered (as the result's
#: ``in_reply_to``). Pub/Sub assigned it, so it, not client_id, says whose answer it is.
IN_REPLY_TO = "in_reply_to"

#: The attributes of a plan message the daemon reads; a v2 signature covers them all.
PLAN_ATTRIBUTES = (PLAN_ID, CASE_NAME, DRY_RUN, CLIENT_ID)
