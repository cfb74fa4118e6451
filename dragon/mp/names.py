"""What `dragon status` calls the processes and queues of the "dragon" start method (issue #12, item 7).

Global Services names every process and channel uniquely (`dragon_process_<p_uid>`, spec §5.4), and
a name given at create can collide (ALREADY); multiprocessing names need not be unique (two processes
may both be called "worker"). So the start method leaves the GS name alone and sends texts for people
beside it, which GS keeps in its descriptors (`ProcessDescriptor.label`/`target`,
`ChannelDescriptor.label`):

* a process: its multiprocessing name (`DragonProcess-1`, `DragonPoolWorker-2`, or the name given)
  and its target, `module-or-script: qualname` (`st.py: work`, `multiprocessing.pool: worker`, a
  subclass's own `run`: `st.py: Worker.run`);
* a queue's channel: its kind and the multiprocessing name of the process that made it (`Queue of
  MainProcess`, `Pool tasks of MainProcess`; a bounded queue's second channel: `Queue slots of ...`).

Plain Python, no trio (children import it).
"""

from __future__ import annotations

from multiprocessing import process

from dragon.client.python_child import callable_text


def target_of(process_obj: process.BaseProcess) -> str:
    """What `process_obj` runs: its target, else its class's own `run`; "" if it runs nothing."""
    target = getattr(process_obj, "_target", None)
    if target is not None:
        return callable_text(target)
    run = type(process_obj).run
    return "" if run is process.BaseProcess.run else callable_text(run)


def channel_label(kind: str) -> str:
    """The label of a channel of kind `kind` that this process makes: `Queue of MainProcess`."""
    return f"{kind} of {process.current_process().name}"
