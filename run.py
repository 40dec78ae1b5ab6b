#!/usr/bin/env python3
"""edge_app entry point: ``python run.py <command> ...`` (see ``python run.py --help``)."""

import sys

from edge_app.cli import main

if __name__ == "__main__":
    sys.exit(main())
