"""``python -m fileops_daemon.cli``: the same as the ``fileops`` command."""

from __future__ import annotations

import sys

from fileops_daemon.cli.main import main

sys.exit(main())
