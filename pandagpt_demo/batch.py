"""`python -m pandagpt_demo.batch ...`: offline batch runs (see app/batch/cli.py), under its documented name."""

from .app.batch.cli import main

if __name__ == "__main__":
    main()
