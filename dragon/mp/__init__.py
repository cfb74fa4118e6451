"""The multiprocessing start method "dragon" (internal; users select it with
`multiprocessing.set_start_method("dragon")`, registered by `import dragon` and `dragon._mp_hook`).

`context` is the start method's context; `popen` starts a child through Global Services and `child`
is that child's first code (fork-served by Local Services when it can be); `queues`, `refs` and
`codec` are the queues on shared-memory channels, the Global Services references that keep their
channels alive, and the pickling they share with `pool`; `fds` passes file descriptors to children;
`names` gives processes and channels the names `dragon status` shows.

Below: `dragon.client` and the catalog; never the services.
"""
