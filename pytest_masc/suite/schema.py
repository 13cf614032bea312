"""The format of suite files (``masc_*.toml`` and their cases CSV): this docstring is its
reference, and the keys and columns each place accepts are defined here.

A suite file names the concepts (reference images + masks), the cases (a prompt, the
generated image + mask, the concept it shows) and the gates each case must pass. This
docstring is the reference for the format; :mod:`.toml` reads the file, :mod:`.csv` a cases
CSV, :mod:`.seeds` a case's images, :mod:`.cases` checks what TOML and CSV cases share, and
:mod:`.model` holds the parsed records. Pure Python + stdlib; no image is opened here (image
and mask sizes are checked by the scorer).

File layout
===========

Any file named ``masc_<something>.toml`` is a suite (see :func:`is_suite_file`). Every path
in it is relative to the directory of the suite file, including the paths in a cases CSV::

    [suite]
    name = "dog-release"          # optional; default: the file stem without "masc_"
    min_concept = 0.5             # default gates for every case (optional)
    min_prompt_margin = 0.0
    min_auc = 0.7                 # suite-level gates (optional, [suite] only)

    [concepts.dog]
    subject = "dog"                          # optional; stripped from prompts for PF
    reference = "refs/dog.png"               # a path or a list of paths
    reference_mask = "refs/dog_mask.png"     # a path or a list, one per reference

    [[cases]]
    id = "dog-beach"                         # optional; default "<concept>-<n>"
    concept = "dog"
    prompt = "a dog on the beach"
    image = "out/dog_beach.png"
    mask = "out/dog_beach_mask.png"
    min_concept = 0.6                        # per-case gate override (optional)
    human = { concept = [3, 4], prompt = [4, 3] }   # optional ratings 0..4, one per rater group
    distractors = ["a dog in the snow"]       # optional; see below

    [protocol]                               # optional: cases come from a benchmark dataset
    kind = "dreambench_plus"                 # or "orida"
    root = "data/dreambench_plus"
    masks = "data/dreambench_plus_masks"     # required for dreambench_plus
    split = "test"                           # ORIDa: split (default "test"), n_subjects (50),
    min_backgrounds = 10                     #   min_backgrounds (10): the paper's protocol

Top-level keys: ``suite``, ``concepts``, ``cases``, ``protocol``; any other key, at any level,
is an error that suggests the closest known key, or says where the key belongs when it is
valid at another level (in TOML every key below a ``[table]`` header belongs to that table, so
``cases = "cases.csv"`` written under ``[suite]`` is a ``[suite]`` key: the error says to write
it above the first header). The file is UTF-8, with or without a BOM, or UTF-16 with a BOM.

``[suite]``
    ``name`` (non-empty string); ``seeds`` (default images per case, see "seeds" below); the
    case gates below (defaults for every case); and the
    suite-level gates ``min_alpha_concept``, ``min_alpha_prompt`` (Krippendorff's alpha of the
    scores against the human ratings, in ``[-1, 1]``) and ``min_auc`` (in ``[0, 1]``).

``[concepts.<name>]``
    ``reference`` is required and ``reference_mask`` usually given: each a path or a
    non-empty list of paths, with as many masks as references (a single string counts as a
    list of one). ``subject`` is optional; when absent it is ``None`` and nothing is stripped
    from prompts. ``segment_prompt`` (optional) is what a segmenter looks for instead of the
    subject. Without ``reference_mask`` the references are segmented (``--masc-segmenter``)
    with ``segment_prompt``, else ``subject``; one of the two is then required.

``[[cases]]``
    ``concept``, ``prompt`` and ``image`` are required; ``mask`` may be left out when the
    concept has a ``subject`` or ``segment_prompt``: the image is then segmented with it
    (the plugin needs ``--masc-segmenter`` for that). ``concept`` must name a
    concept of the same file. ``id`` defaults to ``"<concept>-<n>"``, ``n`` being the 1-based
    position of the case among the cases of its concept; ids must be unique in the suite
    (explicit and default ids alike). Strings are stripped of surrounding whitespace.

Several images per prompt (seeds)
    A case may hold several images of its prompt, one per generation seed; its gates then
    apply to the **mean** of each score over its images (one JSON record per image, with its
    ``seed``; the failure message says ``mean over 4 seeds: ...``). Two spellings:

    - ``images = ["out/beach_0.png", "out/beach_1.png"]``: the seeds are the positions
      (0, 1, ...); masks, when given, are ``masks = [...]``, one per image.
    - ``image = "out/beach_{seed}.png"`` with ``seeds = N`` (an integer >= 1, in the case or
      as a default in ``[suite]``; the case's wins): the seeds are 0..N-1, ``{seed}``
      replaced by each. A ``mask``, when given, must hold ``{seed}`` too
      (``mask = "out/beach_{seed}_mask.png"``).

    Refused, naming the case: both ``image`` and ``images``; ``{seed}`` without ``seeds``;
    ``seeds`` (the case's or ``[suite]``'s) with an ``image`` that has no ``{seed}``; ``seeds``
    given in a case with ``images``; ``images`` whose length differs from ``[suite]`` ``seeds``;
    ``seeds`` below 1 or not an integer; ``{seed}`` in ``images`` or only in ``mask``; ``mask``
    with ``images`` (use ``masks``) or ``masks`` with ``image``; ``masks`` of another length
    than ``images``; one image twice (after resolving paths). A one-image case has no seed
    (``seed`` null in its record); ``images`` with one entry is a one-seed case (seed 0).

    In a cases CSV, a ``seed`` column (a non-negative integer) makes the rows that repeat a
    case ``id`` with different seeds one case with several images; the rows must agree on
    everything but ``seed``, ``image`` and ``mask`` (concept, prompt, gates, distractors,
    ratings). Refused, naming the file and lines: a seeded row without ``id``, a repeated
    (``id``, ``seed``), rows of one id with and without a seed, rows of one id that disagree.
    The seeds are the CSV's values, not renumbered.

    A case whose image cannot be read or scored fails with that error on the image's record
    (naming its seed), and its other images' records say the case's mean could not be
    formed; a NaN score in any seed makes that score's mean NaN, so its gate fails, naming
    the seeds that gave NaN.

Gates
    Case gates (``[suite]`` defaults, per-case overrides): ``min_concept``, ``min_prompt``,
    ``min_prompt_margin``, ``min_global_concept``, ``min_global_prompt``. Each is a number
    (integer or float, not a boolean) in ``[-1, 1]``. A case's effective gates are the
    suite's defaults updated with its own; a gate given nowhere is not checked.
    ``min_alpha_*`` and ``min_auc`` are suite-level only: writing one in a case is an error.

``human``
    Optional table with the keys ``concept`` and/or ``prompt``, each a list of numbers in
    ``[0, 4]`` (one per rater group; a single number is a list of one; an empty list means
    "no rating"). The two lists may have different lengths.

``distractors``
    Other prompts scored on the same background, for the prompt margin. When not given, a
    case's distractors are the other distinct prompts of the cases of the same concept, in
    file order, without the case's own prompt (so a concept with a single case has none,
    and its ``prompt_margin`` is NaN). ``distractors = []`` asks for none. An explicit list
    must not contain the case's own prompt; repeated entries are kept once.

Paths
    Relative paths are joined to the suite file's directory; absolute paths are allowed.
    After resolving ``..`` and symlinks, every reference, mask, image and the cases CSV must
    lie inside the suite file's directory (its real location), so a suite stays
    self-contained; a path that leaves it (``../refs/dog.png``) is an error: copy the file
    under the suite's directory, or move the suite file up. With ``check_files=True`` (the
    default) each must be an existing file; the pytest plugin loads with ``check_files=False``
    and fails a case whose files are missing when it runs (:func:`missing_files`), so the
    other cases still run.
    ``[protocol]`` paths (``root``, ``masks``) name external datasets: they are resolved the
    same way but may lie anywhere; with ``check_files=True`` they must be existing
    directories.

Cases in a CSV file
===================

Instead of ``[[cases]]`` tables a suite may say, at the top level, ``cases = "cases.csv"``
(a string). The CSV is UTF-8 (a BOM is fine) or UTF-16 with a BOM (Excel's "Unicode Text"),
separated by commas, semicolons or tabs with ``"`` quoting (the separator that splits the
header into the most known column names; spreadsheets in many locales save semicolon-
separated "CSV"), and its first row names the columns: ``id``, ``concept``, ``prompt``,
``image``, ``mask``, ``seed``, the case gates (``min_concept`` …), ``distractors`` (``|``-separated
prompts), ``human_concept`` and ``human_prompt`` (``|``-separated numbers). In a semicolon-
or tab-separated file, numbers may have a decimal comma (``0,6``), as those locales write
them. ``concept``, ``prompt`` and ``image`` columns are required; the others optional (an
empty or absent ``mask`` is segmented, as above). An empty cell means "not given" (so a CSV
row cannot ask for zero distractors); blank rows are skipped; a column whose header cell and
every other cell are empty is ignored (Excel writes such columns), but a value under an empty
header cell, or beyond the header's last column, is an error; a shorter row has empty
trailing cells. Paths in the CSV are relative to the suite file, like everywhere else. The
concepts stay in the TOML file.

A suite needs at least one case, unless it has a ``[protocol]`` table (whose dataset
supplies the cases).

Errors
======

Every problem raises :class:`pytest_masc.errors.SuiteError`. The message starts with where
the problem is: the file (relative to the working directory when under it), then the case
(``case 'dog-beach'``, ``case #3`` before its id is known, or ``line 7`` of a CSV), concept
or table, and names the key or column at fault; unknown keys, columns and concept names
come with a "did you mean" suggestion. TOML syntax errors keep tomllib's line and column.
"""
from __future__ import annotations

from ..gates import GATES, SUITE_GATES
from ..protocols.spec import PROTOCOL_KEYS

__all__ = [
    "CASE_KEYS", "CASE_REQUIRED", "CONCEPT_KEYS", "CSV_COLUMNS", "GATE_KEYS", "HUMAN_KEYS", "PLACES",
    "SEED_TOKEN", "SUITE_GATE_KEYS", "SUITE_KEYS", "TOP_KEYS",
]

#: Gates of one case: ``[suite]`` defaults, overridable per case. Each in ``[-1, 1]``.
GATE_KEYS = tuple(GATES)
#: Gates of the whole suite, ``[suite]`` only.
SUITE_GATE_KEYS = tuple(SUITE_GATES)
#: What ``image`` and ``mask`` patterns hold where each seed goes.
SEED_TOKEN = "{seed}"
#: Keys of a case, in a ``[[cases]]`` table.
CASE_KEYS = ("id", "concept", "prompt", "image", "images", "mask", "masks", "seeds", *GATE_KEYS, "human", "distractors")
#: Fields every case needs (a TOML case may give ``images`` for ``image``).
CASE_REQUIRED = ("concept", "prompt", "image")
#: Keys of ``human``.
HUMAN_KEYS = ("concept", "prompt")
#: Columns of a cases CSV.
CSV_COLUMNS = ("id", "concept", "prompt", "image", "mask", "seed", *GATE_KEYS, "distractors", "human_concept",
               "human_prompt")
#: Keys of the file's top level, of ``[suite]`` and of a ``[concepts.<name>]`` table.
TOP_KEYS = ("suite", "concepts", "cases", "protocol")
SUITE_KEYS = ("name", "seeds", *GATE_KEYS, *SUITE_GATE_KEYS)
CONCEPT_KEYS = ("subject", "reference", "reference_mask", "segment_prompt")
#: Where each kind of key is written: place -> (how messages name it, its keys).
PLACES: dict[str, tuple[str, tuple[str, ...]]] = {
    "top": ("the top level", TOP_KEYS),
    "suite": ("[suite]", SUITE_KEYS),
    "concept": ("a [concepts.<name>] table", CONCEPT_KEYS),
    "case": ("a [[cases]] table", CASE_KEYS),
    "protocol": ("[protocol]", PROTOCOL_KEYS),
}
