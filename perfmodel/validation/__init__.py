"""Validation suites: the model against published tables and measured runs, as plug-ins of one protocol.

protocol (Suite, SuiteReport, Row, RunOptions), registry (SUITES: name -> "module:ATTR"), runner
(run_suite_by_name), writer (the one report writer), metrics (errors and summaries), storage (where
measurements go), profiles (this machine's calibrated profile). Suites: suites (cpu-quick, cpu-full, gpu),
ddp_cpu, dlbench (package), cpu_random. Nothing heavy is imported here.
"""
