"""`python -m logscan`."""

import sys

from logscan.app.cli import main

sys.exit(main())
