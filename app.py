"""PandaGPT demo: `python app.py` starts the web app (see `python app.py --help`); a Space runs this file."""

from pandagpt_demo.app.server import main

if __name__ == "__main__":
    main()
