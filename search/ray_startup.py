"""Start-up of Ray workers: the driver's study context, shipped once through Ray's object store.

Every Ray worker process needs a :class:`~search.objective.StudyContext` (the task's model and
data, the students, the search space, the evaluators). Building one from the study file costs
seconds per process: importing the task's libraries, generating or loading its data, loading
the teacher and students from the weight cache. The driver has already built the same context
(and loaded the students the queue needed), so :func:`share_context` puts it into Ray's object
store once, and each worker process takes it from there on its first trial
(:func:`worker_context`) instead of building its own. The workers' contexts are then the
driver's, value for value: same model and data, same space, same reference accuracy.

Only workers on the driver's node take it, and only a context on the CPU (a worker resolves
``study.device`` itself, on the GPUs Ray gives it): a worker on another machine builds its own
from the study file and that machine's weight cache, as before, so that whatever a context
holds of its machine (a latency lookup table, cached files' paths) stays that machine's. A
worker also builds its own when the context cannot be shipped (the driver cannot serialise it,
or the worker cannot load it); the reason is logged at debug level.

The reference travels inside a small :class:`SharedContext`: Tune's ``with_parameters``
fetches its parameters again for every trial, and fetching that is cheap, while the context
itself is fetched once per process.

:func:`start_ray` starts Ray in a background thread while the driver builds its context
(``frontier run --backend ray``), so that Ray's start and the driver's preparation overlap;
:func:`search.ray_backend.run_ray` waits for it.

This module is imported when a trial actor starts: it imports nothing heavy at module level,
and ray only where it is used (:mod:`search.ray_backend` imports ray first, the way a local Ray
needs it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search.objective import StudyContext

log = logging.getLogger("frontier")


@dataclass(frozen=True)
class SharedContext:
    """The driver's context in Ray's object store, and the Ray node it was built on."""

    ref: Any
    node: str


#: StudyContexts built or received in this worker process, by (results folder, study file).
_CONTEXTS: dict[str, StudyContext] = {}


def share_context(ctx: StudyContext) -> SharedContext | None:
    """Put the driver's context into Ray's object store (``None`` when it cannot be)."""
    import ray

    device = getattr(ctx, "device", None)
    if device is not None and device.type != "cpu":
        # its tensors live on this process's GPU; a worker resolves `study.device` itself
        log.debug("the study context is not shipped to Ray workers: it is on %s", device)
        return None
    try:
        return SharedContext(ray.put(ctx), _node())
    except Exception as exc:  # an unpicklable task (a closure over a socket, say)
        log.debug("the study context is not shipped to Ray workers: %s", exc)
        return None


def context_key(job: Mapping[str, Any]) -> str:
    """The key of a job's context among those of this process."""
    return json.dumps([job["results_dir"], job["spec"]], sort_keys=True)


def worker_context(job: Mapping[str, Any], shared: SharedContext | None = None) -> StudyContext:
    """This process's context for ``job``'s study: the driver's (``shared``) on the driver's
    node, else built from the study file; the same object for every later trial."""
    key = context_key(job)
    if key not in _CONTEXTS:
        ctx = _received(shared)
        _CONTEXTS[key] = ctx if ctx is not None else _built(job)
    return _CONTEXTS[key]


def _received(shared: SharedContext | None) -> StudyContext | None:
    import ray

    from search.objective import StudyContext

    if shared is None or shared.node != _node():
        return None
    try:
        ctx = ray.get(shared.ref)
    except Exception as exc:  # a module the driver's context needs is missing here
        log.debug("building the study context: the driver's could not be loaded: %s", exc)
        return None
    if not isinstance(ctx, StudyContext) or not _same_device_here(ctx):
        return None
    return ctx


def _same_device_here(ctx: StudyContext) -> bool:
    """Whether this process resolves ``study.device`` as the driver did (a worker that Ray
    gives a GPU resolves ``"auto"`` to it, and must build its context there)."""
    from spaces.devices import resolve_device

    try:
        return bool(resolve_device(ctx.spec.study.device) == ctx.device)
    except ValueError:
        return False


def _node() -> str:
    """This process's Ray node (empty when Ray is not initialised here)."""
    import ray

    if not ray.is_initialized():
        return ""
    return str(ray.get_runtime_context().get_node_id())


def _built(job: Mapping[str, Any]) -> StudyContext:
    from search.objective import StudyContext
    from search.spec import parse_spec

    return StudyContext(parse_spec(job["spec"]), job["results_dir"])


# --- starting Ray while the driver prepares ------------------------------------------------

_SIGTERM_NOTE = "SIGTERM handler is not set"


class _BackgroundStart:
    """:func:`search.ray_backend.connect` in a thread of its own (see :func:`start_ray`).

    The thread lives on while Ray runs: Ray starts its processes (GCS server, raylet, ...)
    with ``PR_SET_PDEATHSIG``, which on Linux kills them when the *thread* that started them
    ends, not only the process.
    """

    #: Seconds between the kept-alive thread's checks that Ray is still up.
    POLL_S = 1.0

    def __init__(self, connect: Callable[[], None]) -> None:
        self.error: BaseException | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(connect,), name="frontier-ray-start", daemon=True
        )
        self._thread.start()

    def _run(self, connect: Callable[[], None]) -> None:
        import ray

        # ray.init sets its SIGTERM handler only from the main thread, and says so; wait()
        # sets it there
        quiet = _DropMessage(_SIGTERM_NOTE)
        logging.getLogger("ray._private.worker").addFilter(quiet)
        try:
            connect()
        except BaseException as exc:  # raised again in the main thread by wait()
            self.error = exc
        finally:
            logging.getLogger("ray._private.worker").removeFilter(quiet)
            self._started.set()
        stop = threading.Event()
        while self.error is None and ray.is_initialized():
            stop.wait(self.POLL_S)  # until ray.shutdown (or the end of the process)

    def wait(self) -> None:
        self._started.wait()
        if self.error is not None:
            raise self.error
        if threading.current_thread() is threading.main_thread():
            _set_sigterm_handler()


class _DropMessage(logging.Filter):
    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.start)


def _set_sigterm_handler() -> None:
    """What ``ray.init`` does in the main thread: SIGTERM exits (Ray shuts down at exit)."""
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))


_PENDING: list[_BackgroundStart] = []


def start_ray(connect: Callable[[], None]) -> None:
    """Start Ray in the background with ``connect`` (:func:`search.ray_backend.connect` with
    the run's settings and address), so that Ray and its idle worker processes start while the
    driver builds its study context; :func:`search.ray_backend.run_ray` waits for it with
    :func:`finish_start` (and raises what starting raised)."""
    if not _PENDING:
        _PENDING.append(_BackgroundStart(connect))


def finish_start() -> None:
    """Wait for a Ray started by :func:`start_ray`, if any; raise what starting raised."""
    while _PENDING:
        _PENDING.pop().wait()


@contextlib.contextmanager
def starting_ray(connect: Callable[[], None] | None) -> Iterator[None]:
    """:func:`start_ray` for the block (unless ``connect`` is ``None``), which ends with
    :func:`search.ray_backend.run_ray`; when the block raises before it, the start is waited
    for (its own error dropped) so that the process exits with Ray shut down cleanly."""
    if connect is not None:
        start_ray(connect)
    try:
        yield
    except BaseException:
        with contextlib.suppress(BaseException):
            finish_start()
        raise
