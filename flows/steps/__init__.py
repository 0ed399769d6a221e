"""The pipeline's data-processing steps, run as commands: ``python -m flows.steps``.

Each step runs as a host subprocess or in a stock ``python:3.12-slim`` container, so this
package imports only the standard library and ``duckdb`` (a requirement every step agent
declares: the Dagger runner installs it into the step's image, the local runner uses the host's),
and nothing from the parent ``flows`` package (``tests/test_layers.py`` checks both). Every step
writes its outputs into ``--output DIR`` (created if needed), each file atomically
(``name.tmp`` then rename).

Steps (``--threads N`` before the step name, or ``$AIOP_DUCKDB_THREADS``, limits DuckDB's
threads)::

    ingest    --output DIR [--input FILE] [--rows N] [--seed S]
              check FILE (not copied) or generate DIR/input.csv; writes ingest.json
    validate  --input FILE --output DIR [--schema FILE] [--partitions K]
              writes the valid rows as part-00000.parquet .. (K partitions), quarantine.csv,
              validate.json
    transform --input-dir DIR --output DIR --partition I --partitions K [--count M] --group-by COL
              reads DIR/part-<I:05d>.parquet .. (partitions I..I+M-1 of validate's K); writes
              their per-group partial statistics (partial-*.parquet, partials.json), transform.json
    aggregate --input-dir DIR --group-by COL --output DIR
              merges the partial statistics under DIR; writes aggregates.csv, aggregate.json
    report    --validate DIR --aggregate DIR --output DIR
              writes aggregates.csv, quarantine.csv, data/part-*.parquet

Exit codes: 0 success; 64 bad usage; 65 unusable input, with one line on stderr starting
``error:`` that says what is wrong, where and how to fix it; 70 duckdb not installed;
1 internal error. Progress lines go to stdout.

Modules: :mod:`~flows.steps.pipeline` (the pipeline's steps, declared once: their order and
what each reports, from which the flow, its artifacts, the history and the drill take them),
:mod:`~flows.steps.header` (the input file's checks, limits and the column-name rules, also used
by the main job's command line), :mod:`~flows.steps.types` (null tokens, type rules, inference),
:mod:`~flows.steps.formats` (number and date formats a schema line declares),
:mod:`~flows.steps.readings` (the suggestions for text columns), :mod:`~flows.steps.schema`
(``--schema`` files), :mod:`~flows.steps.fallbacks` (text columns a schema line would type),
:mod:`~flows.steps.group_by` (the column to group by, chosen before any step, also used by the
command line and the flow), :mod:`~flows.steps.sample` (the sample generator), one module per
step, and private helpers (``_records``: the byte-level record scanner; ``_csv``, ``_io``,
``_environment``).
"""
