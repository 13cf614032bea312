"""Score a table of samples with Ray Data: one ``MaSC`` per actor, batches through ``score_many``.

Install with ``pip install "pytest-masc[ray]"``. Ray is imported only when a function needs
it, so this package imports without it (and without torch). This module only re-exports the
public names of its modules:

- :mod:`~pytest_masc.ray.schema`: the table's input and output columns (an input column named
  like an output one comes back as ``input_<name>``: ``prompt`` -> ``input_prompt``) and how a
  cell is read;
- :mod:`~pytest_masc.ray.fetch`: local paths for image and mask cells (paths relative to
  ``base_dir``, URIs such as ``s3://…`` copied);
- :mod:`~pytest_masc.ray.actor`: the Ray Data actor :class:`BatchScorer`, which loads its model from
  :class:`~pytest_masc.metric.options.ModelOptions` (re-exported here);
- :mod:`~pytest_masc.ray.tables`: Parquet and CSV tables read and written;
- :mod:`~pytest_masc.ray.cluster`: Ray imported, started or joined (an ``address`` with no
  cluster behind it is one :class:`~pytest_masc.errors.DeviceError` line), resources checked;
- :mod:`~pytest_masc.ray.score`: :func:`score_table`, rows back in input order;
- :mod:`~pytest_masc.ray.samples`: ``score_many`` on Ray for ``--masc-ray``;
- :mod:`~pytest_masc.ray.export`: suites as tables, scored tables back to cases;
- :mod:`~pytest_masc.ray.cli`: ``python -m pytest_masc.ray``.
"""
from __future__ import annotations

from ..metric.options import ModelOptions
from .actor import BatchScorer
from .cluster import INSTALL_HINT, check_resources, import_ray, start_ray
from .schema import (
    IMAGE_COLUMNS, INPUT_PREFIX, OPTIONAL_COLUMNS, OUTPUT_COLUMNS, REQUIRED_COLUMNS, ROW_COLUMN, SCORE_COLUMNS,
    check_columns, output_names, parse_distractors,
)
from .score import RunInfo, error_rows, score_table
from .tables import read_table, write_table

__all__ = [
    "BatchScorer", "IMAGE_COLUMNS", "INPUT_PREFIX", "INSTALL_HINT", "ModelOptions", "OPTIONAL_COLUMNS",
    "OUTPUT_COLUMNS", "REQUIRED_COLUMNS", "ROW_COLUMN", "RunInfo", "SCORE_COLUMNS", "check_columns",
    "check_resources", "error_rows", "import_ray", "output_names", "parse_distractors", "read_table",
    "score_table", "start_ray", "write_table",
]
