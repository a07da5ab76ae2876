"""`python -m carebot` is the `carebot` command."""

import sys

from carebot.cli import main

sys.exit(main())
