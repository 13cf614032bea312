"""``python -m pytest_masc.report``: runs the command line (:func:`pytest_masc.report.cli.main`)."""
import sys

from .cli import main

sys.exit(main())
