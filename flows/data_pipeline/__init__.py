"""The main job: the DuckDB data pipeline.

- ``python -m flows.data_pipeline`` (the same command as ``aiop run``, :mod:`flows.cli.run`)
  checks the arguments and the input before Prefect is even imported, then runs the flow;
- :func:`flows.data_pipeline.flow.data_pipeline` is the Prefect flow it runs;
- :mod:`flows.data_pipeline.options` holds the options both share;
- :mod:`flows.data_pipeline.summarize` is the optional last step (``--summarize``).

The step programs the flow runs in containers live in :mod:`flows.steps`.
"""
