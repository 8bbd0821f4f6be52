"""`python -m pandagpt_demo.weights ...`: the weights command (see cli.py)."""

import sys

from .cli import main

sys.exit(main())
