"""`python -m logscan`."""

import sys

from logscan.cli import main

sys.exit(main())
