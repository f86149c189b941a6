"""``python -m execplanner_widgets``: the ``execplanner`` command, for environments whose PATH lacks it."""

import sys

from .cli import main

sys.exit(main())
