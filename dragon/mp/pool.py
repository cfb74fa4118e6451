"""`Pool` of the "dragon" start method: the standard library's Pool, its task and result queues on channels.

`multiprocessing.Pool()` under the start method "dragon" (and `get_context("dragon").Pool()`) is this
subclass of `multiprocessing.pool.Pool`. Everything users see (map, imap, imap_unordered, starmap,
apply_async and its callbacks, initializer, maxtasksperchild, close, terminate, join, the context
manager, errors) is the stdlib's own code; only the two queues between the pool and its workers
change, because with many small tasks (`chunksize=1`) they are the whole cost:

* The pool process has three busy threads (tasks, results, workers) sharing one GIL, and in the
  stdlib every task costs it a pipe write, two pipe reads and a wake of the worker-handler thread
  (it waits on the result pipe too). Each system call lets another thread take the GIL, so the
  threads spend their time handing it over. Here both queues are channels
  (`dragon.mp.queues.SimpleQueue`): the pool process is the only sender of tasks and the only
  receiver of results, so it keeps those two locks for good (`Channel.hold_lock`; in a run of several
  nodes the task lock is leased instead, see `_setup_queues`) and its side of a task makes no
  system call at all while workers keep up; the result thread takes every result
  waiting at once (`_Results`), and does not spin holding the GIL; the worker handler waits on
  worker exits and its notifier only. A worker, or the result thread, that finds nothing to take
  naps briefly before it waits to be woken (NAP_S).
* A task's functions are pickled once per pool process and unpickled once per worker when they
  are module-level functions (`_encode_task`): pickling a function by name looks it up again
  every time, a third of the pool process's cost of a `map` task with `chunksize=1`. Bound
  methods, partials and callable objects carry their state with every task, as in the stdlib.
* Workers take one task per `get` (those of another node: below), under the task channel's receive
  lock, as they take one from the stdlib's pipe under its lock: a slow task delays nobody else's,
  chunking is what `chunksize` says.
  Tasks are sent as the task thread makes them, never held back for a batch (an `imap` over a slow
  iterable hands each task out at once).
  A worker killed in the middle of a `get` leaves the channel consistent, where the stdlib's pipe
  lock stays taken and stops the pool.
* A worker on another node than the pool's channels (a run of several nodes) reaches them by round
  trips to their node's transport agent, so it takes cheap tasks several at a time: **[choice]** a
  receive asks for as many as its last ones ran in TASK_SPAN_S (1 ms; `_Pace`: one at first, one at
  a time for tasks slower than that, at most TASK_BATCH_MAX) and gets at most the tasks waiting
  divided by twice the number of workers (`ChannelOp.share`, counted at the tasks' node), at least
  one: a worker holds a batch only while every other worker has at least twice as many waiting,
  so with tasks of one length the map ends no later for it. It holds back the results of a batch
  until its last task ran, then sends them in one operation (`_Batch`; at the worker's exit too, when
  the tasks it took and did not run go back, as they would have stayed in the stdlib's pipe): a result
  comes late by what the batch's later tasks take, about TASK_SPAN_S for tasks of one length, more
  behind a slow one, but not much more than BATCH_LOOK_S (10 ms): a task of a batch that runs that
  long may be waiting for an earlier task's result (an `apply_async` callback that sets an Event it
  waits on) or a later task, so the results held back go then and the other tasks go back to the
  end of the task channel (`_Batch`'s watcher thread). Results are posted without waiting for their
  answers, which the agent sends only when a result could not go in (and every
  `dragon.client.remote.QUIET_RUN`-th): a result's `put` returns once it is sent rather than once it
  is in; the worker's exit still waits until the agent has every result it posted
  (`dragon.client.remote`), so a worker that ends loses none. A pool with maxtasksperchild takes
  one task a receive (a worker that ends must hold none). Known difference: a worker of another
  node killed while it holds a batch loses its tasks with it (the stdlib's loses the one it runs;
  either pool then waits for them forever, as the stdlib's does). (Pool(4), two workers on each of
  two virtual nodes sharing 2 CPUs, `map(abs, ...)`: node 0's agent's CPU time per remote task from
  230-310 to about 20 µs, the workers of node 1 taking 25-75 % of the tasks instead of 2-6 %;
  of the same pool on one node, medians of four benches of five rounds, chunksize 100 from 0.36x to
  0.52-0.70x, chunksize 1 from 0.39x to 0.38-0.51x, its rounds 0.30-0.73x as the pool process gets
  more or less of the shared CPUs.)
* When the pool ends (terminate, the context manager, garbage collection, exit) its channels are
  destroyed once its workers are gone, whatever references they held: workers stopped with SIGTERM
  never give theirs back, and a program making many pools would otherwise keep their memory until
  the runtime ends.

Workers are placed by the `dragon.native.Policy` current when the pool is made (`with Policy(...)`
around `Pool(...)`), all of them, for the pool's whole life (`Pool.__init__`).

`multiprocessing.pool.Pool(context=...)` built directly (and `concurrent.futures`) stays the stdlib's
pipe pool under "dragon" too (see `dragon.mp.context`).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import operator
import os
import pickle
import threading
import time
import types
from multiprocessing import pool as mp_pool
from multiprocessing import util
from typing import Any, Final

from dragon.client.remote import RemoteChannel
from dragon.errors import ChannelEmpty, ChannelError, ChannelFull
from dragon.ids import LaunchParameters
from dragon.mp.codec import PROTOCOL, decode, encode
from dragon.mp.popen import pin_policy
from dragon.mp.queues import SimpleQueue, _rebuild_simple
from dragon.mp.refs import Hold
from dragon.policy import Policy, current_policy

TASK_SPAN_S: Final = 1e-3
"""A worker of another node asks for as many tasks at once as its last ones ran in this long (`_Pace`):
long enough to spread a round trip to the tasks' node over many cheap tasks, short enough that the
results it holds back meanwhile (`_Batch`) come late by no more than about this."""
TASK_BATCH_MAX: Final = 64
"""The most tasks a worker of another node takes in one receive."""
BATCH_LOOK_S: Final = 10e-3
"""How often a worker of another node that holds a batch looks whether its task is stuck: one found
running at two looks in a row (it ran at least this long, not counting its waits for a CPU) makes it
send the results it holds back and give the batch's other tasks back (`_Batch`: the task may be
waiting for one of them)."""
RESULT_BATCH: Final = 256
"""The most results the result thread takes from its channel at once."""
TERMINATING_CHECK_S: Final = 0.05
"""How often a put waiting for room in the result channel looks whether the pool is terminating."""
NAP_S: Final = 100e-6
"""How long a worker that finds no task, and the result thread that finds no result, first sleep
before they wait for one (registering as a waiter, to be woken by the sender's doorbell). In a
busy pool the next task or result nearly always comes within it, and a sleep of fixed length costs
one system call where a doorbell wait costs the waiter several and the sender a write; the result
thread's sleep also leaves the GIL to the task thread (tools/bench_mp.py pool1 measures what it
saves). A pool waiting for work pays it once per wait: at most NAP_S (plus the kernel's
timer slack) of extra latency for a task or result that comes just after the sleep began."""


class Pool(mp_pool.Pool):
    """`multiprocessing.pool.Pool` whose task and result queues are channels (see the module docstring)."""

    _ctx: Any  # the stdlib's attributes that typeshed does not declare
    _change_notifier: Any
    _inqueue: SimpleQueue
    _outqueue: _ResultQueue

    def __init__(
        self,
        processes: int | None = None,
        initializer: Any = None,
        initargs: Any = (),
        maxtasksperchild: int | None = None,
        context: Any = None,
    ) -> None:
        """The stdlib's; the `dragon.native.Policy` current now places every worker, the ones started
        later to replace others (maxtasksperchild, or a worker that died) included: those start
        from the pool's worker-handler thread, which sees no `with Policy(...)` of the caller."""
        policy = current_policy()
        if policy is not None:
            self.Process = functools.partial(_placed_worker, policy)  # type: ignore[method-assign]
        self._task_share = _task_share(processes, maxtasksperchild)
        super().__init__(processes, initializer, initargs, maxtasksperchild, context)

    def _setup_queues(self) -> None:
        self._inqueue = _Tasks(ctx=self._ctx)
        self._inqueue._share = self._task_share
        self._outqueue = _ResultQueue(ctx=self._ctx)
        if LaunchParameters.from_env().nodes <= 1:
            # In a run of several nodes the task channel's home agent may put a task back (a worker of
            # another node died as its receive took it: `dragon.client.remote`), so the send lock
            # stays leased (`SimpleQueue`'s default), which gives way: a hold never would.
            self._inqueue._hold_lock("send")
        self._outqueue._hold_lock("recv")
        self._outqueue._no_spin()
        self._quick_put = self._inqueue.put
        self._quick_get = _Results(self._outqueue).get

    def _get_sentinels(self) -> list[Any]:
        """What the worker handler waits on besides worker exits: its notifier only (the stdlib's also
        waits on the result pipe, which wakes that thread once per result for nothing)."""
        return [self._change_notifier._reader]

    @staticmethod
    def _help_stuff_finish(inqueue: SimpleQueue, task_handler: threading.Thread, size: int) -> None:
        """While terminating: drop waiting tasks, so that a task handler blocked on a full task
        channel can go on and see that the pool ends (what the stdlib does with its pipe)."""
        while task_handler.is_alive():
            try:
                inqueue._take_nowait()
            except (ChannelEmpty, ChannelError, OSError):
                return

    @classmethod
    def _terminate_pool(cls, taskqueue: Any, inqueue: SimpleQueue, outqueue: _ResultQueue, *rest: Any) -> None:
        """The stdlib's ending (stop the threads, terminate and join the workers), then destroy both
        channels: no worker is left to use them. The pool's own end-of-results sentinels may drop
        undelivered results to make room meanwhile (`_ResultQueue`)."""
        outqueue._terminating = True
        try:
            super()._terminate_pool(taskqueue, inqueue, outqueue, *rest)  # type: ignore[misc]
        finally:
            inqueue._destroy()
            outqueue._destroy()


def _task_share(processes: Any, maxtasksperchild: Any) -> int:
    """`_Tasks._share` of a pool of `processes` workers: twice as many as there are workers (a worker
    of another node takes at most 1/(2 x workers) of the tasks waiting at once); 0 (one task per
    receive) with `maxtasksperchild`, whose workers end after a number of tasks and must hold none
    then. The stdlib checks the arguments (and raises) in `Pool.__init__`, after this."""
    if maxtasksperchild is not None:
        return 0
    if processes is None:  # as the stdlib counts them
        processes = (os.process_cpu_count() if hasattr(os, "process_cpu_count") else os.cpu_count()) or 1
    try:
        count = operator.index(processes)  # an int, or what stands for one (numpy's)
    except TypeError:
        return 0
    return 2 * count if count > 0 else 0


def _placed_worker(policy: Policy, ctx: Any, *args: Any, **kwargs: Any) -> Any:
    """A worker process of a pool made under `policy` (`Pool.Process`, as the stdlib calls it)."""
    worker = ctx.Process(*args, **kwargs)
    pin_policy(worker, policy)
    return worker


class _Batch:
    """A Pool worker of another node than its pool's channels: the tasks it took in one receive
    (`_Tasks.get`) and the results of those it ran, held back until the last of them ran, then sent
    in one operation (`_ResultQueue._put_held`). One per process (`_batch`): a worker serves one pool.

    **[choice]** A task of a batch that runs far longer than its pace expects (the batch is of tasks
    that ran in well under TASK_SPAN_S) may be waiting for something the batch holds: an earlier
    task's result (an `apply_async` callback in the pool process that sets an Event it waits on) or
    a later task (which another worker would run under the stdlib). A watcher thread (`_watch`,
    started by the first batch of more than one task) looks every BATCH_LOOK_S while the worker holds
    something, and sleeps otherwise; a task it finds running at two looks in a row, for at least
    BATCH_LOOK_S less the time the worker's thread waited for a CPU meanwhile (as `_Pace` counts: a
    worker held up by a busy machine is not stuck), makes it send the results held back and give
    the batch's other tasks back to the task channel, so such a wait ends as under the stdlib, where
    a worker takes one task at a time. The price of a task that was only slow (a long item of a map
    over uneven inputs, a pause of the collector): the tasks given back go to the end of the task
    channel, behind those sent since (an ordered `imap` waits longer for their results), and the
    worker's next receive takes one task (`_Pace.gave_back`). The worker's side costs an attribute
    write per task and an uncontended lock per task and result.

    Results leave in the order their tasks ran, whichever thread sends them, and the worker's exit
    waits for a give-back under way (`_sending`). A send the watcher could not make (the pool gone)
    is raised by the worker's next result (`_failed`), as its own send's failure would be."""

    __slots__ = (
        "_armed",
        "_failed",
        "_lock",
        "_ran",
        "_sending",
        "_wake",
        "out",
        "pace",
        "results",
        "source",
        "tasks",
    )

    def __init__(self) -> None:
        self.tasks: collections.deque[bytes] = collections.deque()
        self.results: list[bytes | memoryview] = []
        self.out: _ResultQueue | None = None
        self.source: RemoteChannel | None = None
        """The task channel the tasks came from (where `give_back` puts them)."""
        self.pace = _Pace()
        self._lock = threading.Lock()
        """Taken for every change of `tasks` and `results` (the watcher's reads of them need none)."""
        self._sending = threading.Lock()
        """Held from taking results or tasks out until they are sent: they leave in order, and
        the worker's exit (`at_exit`) waits for the watcher's give-back."""
        self._ran = 0
        """How many tasks the worker started: the watcher's sign of progress."""
        self._armed = False
        self._wake: threading.Event | None = None
        self._failed: BaseException | None = None

    def next_task(self) -> bytes | None:
        """The next task of the batch (None: none left), counted as started."""
        with self._lock:
            data = self.tasks.popleft() if self.tasks else None
        self._ran += 1
        return data

    def took(self, source: RemoteChannel, got: list[bytes]) -> bytes:
        """A receive took `got` (at least one) from `source`: the first is started now, the rest held."""
        self.source = source
        self.pace.took(len(got))
        self._ran += 1
        if len(got) > 1:
            with self._lock:
                self.tasks.extend(got[1:])
            if not self._armed:
                self._arm()
        return got[0]

    def hold(self, result: bytes | memoryview, out: _ResultQueue) -> None:
        """A result of the batch's tasks, held back until the last of them ran (or the watcher sends it)."""
        failed, self._failed = self._failed, None
        if failed is not None:
            raise failed
        self.out = out
        with self._lock:
            self.results.append(result)
            last = not self.tasks
        if last:
            self.flush()

    def flush(self) -> None:
        """Send the results held back (posted: a quiet send, see `_ResultQueue._setup`)."""
        with self._sending:
            self._send_results()

    def _send_results(self) -> None:
        with self._lock:
            results, self.results = self.results, []
        if results:
            assert self.out is not None
            self.out._chan.send_many(results)

    def at_exit(self) -> None:
        """At the worker's exit (a task that called `sys.exit`, say): the results held back still go,
        and the tasks taken and not run go back to their channel, as under the stdlib the results
        were sent and the tasks were still in the pipe; a failure then (the pool gone) is nobody's
        to hear."""
        with contextlib.suppress(Exception):
            self.give_back()

    def give_back(self) -> None:
        """The results held back go, the tasks taken and not run go back to their channel (at its end)."""
        with self._sending:
            with self._lock:
                rest = list(self.tasks)
                self.tasks.clear()
            self.pace.gave_back(len(rest))
            self._send_results()
            if rest:
                assert self.source is not None
                self.source.send_many(rest)

    def _arm(self) -> None:
        """Wake the watcher (started on first use; without it, if no thread can be started, a batch
        is only not watched)."""
        if self._wake is None:
            wake = threading.Event()
            try:
                threading.Thread(
                    target=self._watch, args=(wake,), name="dragon pool batch watcher", daemon=True
                ).start()
            except RuntimeError:  # "can't start new thread"
                return
            self._wake = wake
        self._armed = True
        self._wake.set()

    def _watch(self, wake: threading.Event) -> None:
        """The watcher thread (see the class docstring)."""
        while True:
            wake.wait()
            wake.clear()
            seen, since, delayed = -1, 0.0, 0.0
            while True:
                time.sleep(BATCH_LOOK_S)
                if not (self.tasks or self.results):
                    self._armed = False
                    if not (self.tasks or self.results):  # nothing came meanwhile: `took` arms again
                        break
                    self._armed = True
                if self._ran != seen:  # another task since the last look: it runs from now on
                    seen, since, delayed = self._ran, time.perf_counter(), self.pace._waited()
                elif time.perf_counter() - since - (self.pace._waited() - delayed) >= BATCH_LOOK_S:
                    try:
                        self.give_back()
                    except Exception as exc:  # the worker's next result raises it
                        self._failed = exc


_batch: _Batch | None = None
"""This process's `_Batch`, once it is a worker of another node than its pool's channels."""


class _Pace:
    """How many tasks the next receive of a worker of another node asks for: as many as its last
    ones ran in TASK_SPAN_S (from taking them to asking for more), 1 to TASK_BATCH_MAX; the first
    receive asks for one.

    The time a task ran is its wall time less the time its thread waited for a CPU (the kernel's
    run delay, /proc/thread-self/schedstat: 1 µs a read): on a busy machine, with more busy
    threads than CPUs, waiting for a CPU stretched cheap tasks tenfold, and the pace fell to one
    task per round trip (a Pool of 4 workers on 2 virtual nodes of 2 CPUs: most receives took
    one task). Time a task spends sleeping or waiting for I/O counts: such a task is slow, and
    its worker takes one at a time. Without that file, the wall time."""

    __slots__ = ("_fd", "_n", "_t0", "_w0", "count")

    def __init__(self) -> None:
        self.count = 1
        self._n = 0
        self._t0 = self._w0 = 0.0
        try:  # this thread's (the worker's, which takes its tasks); closed when the process ends
            self._fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._fd = -1

    def _waited(self) -> float:
        """How long the thread that made this pace (the worker's) has waited for a CPU, in all
        (seconds); 0 if that cannot be read."""
        if self._fd >= 0:
            try:
                return int(os.pread(self._fd, 64, 0).split()[1]) / 1e9
            except (OSError, ValueError, IndexError):
                self._fd = -1
        return 0.0

    def next_count(self) -> int:
        if self._n:
            per = (time.perf_counter() - self._t0 - (self._waited() - self._w0)) / self._n
            self.count = TASK_BATCH_MAX if per * TASK_BATCH_MAX <= TASK_SPAN_S else max(1, int(TASK_SPAN_S / per))
        return self.count

    def took(self, n: int) -> None:
        self._n, self._t0, self._w0 = n, time.perf_counter(), self._waited()

    def gave_back(self, n: int) -> None:
        """`n` of the tasks last taken went back unrun: the pace counts those that ran."""
        self._n = max(1, self._n - n)


class _ResultQueue(SimpleQueue):
    """The result channel: workers put results, the pool process puts only its end sentinels.

    Once the pool is terminating, its result thread stops reading, and a sentinel put into a full
    channel would wait for room forever (the stdlib's pipe pool hangs there too, sooner: a pipe
    holds less). So a put that finds no room looks again every TERMINATING_CHECK_S whether the
    pool is terminating, and then drops the oldest waiting result (which nobody would read) to make
    room. `_terminating` is only ever set in the pool process (a pickled handle starts without it)."""

    _KIND = "Pool results"
    _terminating = False

    def _setup(self, hold: Hold) -> None:
        """As SimpleQueue's; in a worker of another node than the channel's, results are posted quietly
        (see the module docstring)."""
        super()._setup(hold)
        chan = hold.chans[0]
        if isinstance(chan, RemoteChannel):
            self._chan = chan.posted(quiet=True)  # type: ignore[assignment]
            self.put = self._put_held  # type: ignore[method-assign]  # the pool's node keeps the plain put

    def _put_held(self, obj: object) -> None:
        """`put` in a process of another node: in a worker that took several tasks in one receive
        (`_Batch`), the result waits until the last of them ran, then all go together."""
        batch = _batch
        if batch is None:
            super().put(obj)
            return
        self._check_open(1)
        batch.hold(encode(obj), self)

    def _send_waiting(self, data: bytes | memoryview) -> None:
        chan = self._chan
        while True:
            try:
                chan.send(data, timeout=TERMINATING_CHECK_S)
                return
            except ChannelFull:
                if self._terminating:
                    try:
                        chan.recv_nowait()
                    except ChannelEmpty:
                        pass


class _Results:
    """The result channel as its only reader (the pool's result thread) sees it: every call that
    finds no result in hand takes all that are waiting (up to RESULT_BATCH) in one go, which is fair
    since nobody else reads them. A channel that is gone ends the result thread as a closed pipe
    would (EOFError)."""

    __slots__ = ("_batch", "_take_many")

    def __init__(self, queue: SimpleQueue) -> None:
        self._take_many = queue._take_many
        self._batch: collections.deque[bytes] = collections.deque()

    def get(self) -> Any:
        batch = self._batch
        if not batch:
            take = self._take_many
            try:
                got = take(RESULT_BATCH, 0)
                if not got:
                    time.sleep(NAP_S)  # see NAP_S
                    got = take(RESULT_BATCH, 0) or take(RESULT_BATCH, None)
            except ChannelError as e:
                raise EOFError(f"the pool's result channel is gone: {e}") from None
            batch.extend(got)
        return decode(batch.popleft())


class _Tasks(SimpleQueue):
    """The task channel: tasks travel in compact form (`_encode_task`), and a worker's `get` naps
    (NAP_S) before it waits for a task when there is none at hand, in case one comes meanwhile."""

    _KIND = "Pool tasks"

    def put(self, obj: object) -> None:
        self._check_open()
        self._send(_encode_task(obj))

    _share = 0
    """A worker of another node takes several tasks in one receive, at most the tasks waiting
    divided by this (`ChannelOp.share`, `_task_share`); 0: one per receive."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        _, (_, refs) = super().__reduce__()
        return (_rebuild_tasks, (refs, self._share))

    def get(self) -> Any:
        self._check_open()
        chan = self._chan
        if self._share and isinstance(chan, RemoteChannel):
            return self._get_batched(chan)
        try:
            return _decode_task(chan.recv(0))
        except ChannelEmpty:
            pass
        time.sleep(NAP_S)
        return _decode_task(chan.recv())

    def _get_batched(self, chan: RemoteChannel) -> Any:
        """A worker of another node: the next task of those it took in one receive (`_Batch`), or, with
        none left, as many as its pace asks for (`_Pace`), after sending the results it held back. A
        sentinel (None: the pool ends) that came with others gives those back: they can only be the
        other workers' sentinels, which the pool sends after every task. (The share keeps a batch
        clear of them, the depth it is counted from being exact but for processes killed in the
        middle of an operation on the channel; this is the net below that.) So does a task that
        cannot be unpickled here, which ends the worker (the stdlib's too), after the results of
        the batch's earlier tasks went."""
        global _batch
        batch = _batch
        if batch is None:
            batch = _batch = _Batch()
            util.Finalize(None, batch.at_exit, exitpriority=0)  # before the link's last flush (-7)
        data = batch.next_task()
        if data is None:
            batch.flush()
            data = batch.took(chan, chan.recv_many(batch.pace.next_count(), share=self._share))
        try:
            task = _decode_task(data)
        except BaseException:  # a task that cannot be unpickled here ends the worker, as the stdlib's
            task = None
            raise
        finally:
            if task is None:
                batch.give_back()
        return task


def _rebuild_tasks(refs: list[tuple[int, str]], share: int) -> _Tasks:
    tasks = _rebuild_simple(_Tasks, refs)
    tasks._share = share
    return tasks


# ------------------------------------------------------------------------------------------- tasks

TASK_TAG: Final = 0x01
"""The first byte of a task in compact form. Every other message on the task channel is a pickle
(first byte 0x80): `_encode_task` pickles even a `bytes` item, which `encode` would send as it is."""
_TAG: Final = bytes([TASK_TAG])
NAMED_CACHE_MAX: Final = 1024
"""The most callables either side of the task channel keeps the pickle of (then it starts afresh)."""
_BY_NAME: Final = (types.FunctionType, types.BuiltinFunctionType)
_STARS: Final = (mp_pool.mapstar, mp_pool.starmapstar)  # type: ignore[attr-defined]  # not in typeshed
_named: dict[Any, bytes] = {}  # the pool process's side: callable -> its pickle
_resolved: dict[bytes, Any] = {}  # a worker's side: pickle -> callable


def _by_name(fn: Any) -> bytes | None:
    """The pickle of `fn`, made once, if pickling names it rather than copying it (a module-level
    function, a builtin function of a module): it never changes. None for anything else (a bound
    method, a partial, a callable object, a function that cannot be found by its name). Known
    difference: a function whose module name is rebound to another object after its first task
    still travels by that name (the stdlib would then refuse to pickle it); the cache keeps each
    function it saw alive until it is full."""
    kind = type(fn)
    if kind is not types.FunctionType and kind is not types.BuiltinFunctionType:
        return None
    data = _named.get(fn)
    if data is None:
        if kind is types.BuiltinFunctionType and not isinstance(fn.__self__, types.ModuleType):
            return None  # a method of an object, such as [].append: pickled with its object
        try:
            data = pickle.dumps(fn, PROTOCOL)
        except Exception:  # a lambda, a local function: the task's own pickling reports it
            return None
        if len(_named) >= NAMED_CACHE_MAX:
            _named.clear()
        _named[fn] = data
    return data


def _encode_task(task: object) -> bytes | memoryview:
    """The message for an item of the task channel. A task of the stdlib's pool, `(job, i, func,
    args, kwds)`, whose `func` pickles by name, travels as TASK_TAG and the pickle of `(job, i,
    pickle of func, pickle of fn or None, rest, kwds)`: for `map` and `starmap` (`func` is
    `mapstar` or `starmapstar`, `args` is `((fn, chunk),)`) fn by name too if it can be, `rest`
    the chunk; otherwise `rest` is `args`.

    Why: pickling a function by name (the standard way) imports its module and looks the name up
    again for every pickle, and unpickling it does the same: for `map` with `chunksize=1`, two
    functions a task, a good part of either side's CPU per task.
    Here each side does it once per function. A function pickled by name is only its module and
    name, so its pickle never changes, and a worker resolves it when it first meets it, as it
    would unpickling it (a worker that cannot find it fails the same way)."""
    if type(task) is tuple and len(task) == 5:
        job, i, func, args, kwds = task
        f = _by_name(func)
        if f is not None:
            g = None
            if (
                func in _STARS
                and type(args) is tuple
                and len(args) == 1
                and type(args[0]) is tuple
                and len(args[0]) == 2
            ):
                g = _by_name(args[0][0])
                if g is not None:
                    args = args[0][1]
            return _TAG + encode((job, i, f, g, args, kwds))
    if type(task) is bytes:
        return pickle.dumps(task, PROTOCOL)
    return encode(task)


def _decode_task(data: bytes) -> Any:
    """The item `_encode_task` made `data` of."""
    if data[0] != TASK_TAG:
        return decode(data)
    job, i, f, g, args, kwds = pickle.loads(memoryview(data)[1:])
    if g is not None:
        args = ((_resolve(g), args),)
    return job, i, _resolve(f), args, kwds


def _resolve(data: bytes) -> Any:
    """The callable a pickle by name stands for, unpickled once."""
    fn = _resolved.get(data)
    if fn is None:
        fn = pickle.loads(data)
        if len(_resolved) >= NAMED_CACHE_MAX:
            _resolved.clear()
        _resolved[data] = fn
    return fn
