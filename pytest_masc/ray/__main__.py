"""``python -m pytest_masc.ray samples.parquet --out scores.parquet``: see :mod:`pytest_masc.ray.cli`."""
import sys

from .cli import main

sys.exit(main())
