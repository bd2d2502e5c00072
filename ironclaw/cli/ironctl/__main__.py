"""``python -m ironclaw.cli.ironctl``."""

import sys

from . import main

sys.exit(main())
