"""``python -m sensors_sim ...`` (same as ``citybrain sim ...``)."""

from __future__ import annotations

import sys

from sensors_sim.cli import main

sys.exit(main())
