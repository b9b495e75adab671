"""``python -m rollouts``: the operator command line (same as the ``rollouts`` script)."""

import sys

from rollouts.cli import main

sys.exit(main())
