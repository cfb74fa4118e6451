"""The `dragon` command's tools for a running or dead runtime: `dragon status` (`status`, built on
`status_query`, `status_report` and `status_render`) and `dragon cleanup` (`cleanup`).

They stand beside a runtime, not in it: they import only the catalog, the floor modules
(`dragon._rundir`, `dragon._runs`) and `dragon.transport`'s public names
(tests/dragon/test_tools_layering.py).
"""
