"""Validation suites: the model against published tables and measured runs.

Each suite is its own module with a `run_*` function returning a frozen result object and
(optionally) writing a report. Nothing heavy is imported here; import the suite module you need,
e.g. `from perfmodel.validation.dlbench import run_dlbench`.
"""
