"""`python -m pandagpt_demo.chat ...`: the terminal chat (see app/terminal.py), under its documented name."""

from .app.terminal import main

if __name__ == "__main__":
    main()
