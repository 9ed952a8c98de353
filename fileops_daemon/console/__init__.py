"""``fileops console``: the approval web console (docs/console.md).

A layer above the service and the client: it reads the ledger, decides with the very function
``fileops approve`` runs (``service/deciding.py``), and publishes through the client. The CLI
starts it; nothing below imports it.
"""

from __future__ import annotations

__all__: list[str] = []
