"""The runtime's client: how a process talks to Global Services (internal; the public faces are
`dragon.native`, blocking, and `dragon.aio`, trio).

Read in this order: `requests` builds every request and translates every answer (one `run` for the
blocking flavour, one `run_async` for trio); `gs_client` is the blocking connection of a process to
Global Services (its reply channel, launch parameters); `aio_connection` the trio ones; `handles` the
state that `dragon.native` and `dragon.aio` objects share. `background` and `embedded` are the two
other ways of having a runtime (one brought up for a plain `python my.py`, one inside a trio
program's `dragon.serve`); `pipes` the PIPE channels of a managed process's stdio.

Below: the catalog (`dragon.messages`, ids, descriptors, errors), the run directory and
`dragon.transport`. Never the services.
"""
