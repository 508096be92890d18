"""Ray workers take the driver's study context from the object store instead of building one."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from search import ray_startup
from search.backends import RaySettings
from search.objective import StudyContext
from search.ray_backend import connect, ray
from search.ray_startup import (
    SharedContext,
    finish_start,
    share_context,
    start_ray,
    starting_ray,
    worker_context,
)
from search.spec import StudyFileError, load_spec
from tests.search._cluster import warm_cache
from tests.studyfile import write_study


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    started = not ray.is_initialized()
    connect(RaySettings(), None)
    yield
    if started:
        ray.shutdown()


@pytest.fixture
def driver(tmp_path: Path, warm_weights: Path) -> tuple[StudyContext, dict[str, object]]:
    """The driver's context of a tiny study, marked as the driver's, and a trial job of it."""
    spec = load_spec(write_study(tmp_path))
    out = tmp_path / "out"
    warm_cache(warm_weights, out)
    ctx = StudyContext(spec, out)
    ctx.built_by = "driver"  # type: ignore[attr-defined]
    job = {"spec": spec.to_data(), "results_dir": str(out.resolve()), "cpus_per_trial": 1}
    return ctx, job


@pytest.fixture(autouse=True)
def fresh_contexts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_startup, "_CONTEXTS", {})


Shipped = tuple[StudyContext, dict[str, object], SharedContext]


@pytest.fixture
def shipped(local_ray: None, driver: tuple[StudyContext, dict[str, object]]) -> Shipped:
    """The driver's context put into the object store of a local Ray."""
    ctx, job = driver
    shared = share_context(ctx)
    assert shared is not None and shared.node
    return ctx, job, shared


@pytest.mark.slow
def test_a_worker_on_the_drivers_node_takes_its_context_once(shipped: Shipped) -> None:
    ctx, job, shared = shipped
    got = worker_context(job, shared)
    assert got is not ctx  # a copy, through the object store
    assert getattr(got, "built_by", None) == "driver"
    assert got.space.layers == ctx.space.layers and got.space.students == ctx.space.students
    assert got.reference_accuracy == ctx.reference_accuracy
    assert worker_context(job, shared) is got  # every later trial: the same object


@pytest.mark.slow
def test_a_worker_builds_its_own_elsewhere_or_when_the_context_cannot_travel(
    shipped: Shipped,
) -> None:
    ctx, job, shared = shipped
    # another node: built there from the study file (its own machine's caches)
    other = worker_context(job, SharedContext(shared.ref, node="another-node"))
    assert not hasattr(other, "built_by")
    assert other.space.layers == ctx.space.layers
    ray_startup._CONTEXTS.clear()
    # the reference holds no context
    assert not hasattr(worker_context(job, SharedContext(ray.put(42), shared.node)), "built_by")
    ray_startup._CONTEXTS.clear()
    assert not hasattr(worker_context(job, None), "built_by")
    # a context that cannot be serialised is not shipped
    ctx.lock = threading.Lock()  # type: ignore[attr-defined]
    assert share_context(ctx) is None


def test_ray_starts_in_the_background_and_the_run_waits_for_it() -> None:
    started = threading.Event()
    release = threading.Event()
    calls: list[tuple[str, str | None]] = []

    def slow_connect(settings: RaySettings, address: str | None) -> None:
        calls.append((threading.current_thread().name, address))
        started.set()
        release.wait(10)

    start_ray(functools.partial(slow_connect, RaySettings(), "head:6379"))
    start_ray(functools.partial(slow_connect, RaySettings(), "again:6379"))  # one at a time
    assert started.wait(10)
    waiter = threading.Thread(target=finish_start)
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # the run waits until Ray has started
    release.set()
    waiter.join(10)
    assert not waiter.is_alive()
    assert calls == [("frontier-ray-start", "head:6379")]
    finish_start()  # nothing pending: returns at once


def test_a_failed_start_is_raised_where_the_run_waits() -> None:
    def refused(settings: RaySettings, address: str | None) -> None:
        raise StudyFileError(f"Cannot join the Ray cluster at {address!r}")

    start_ray(functools.partial(refused, RaySettings(), "nowhere:1"))
    with pytest.raises(StudyFileError, match="nowhere:1"):
        finish_start()
    # an error of the preparation wins over the start's own, which is waited for and dropped
    with (
        pytest.raises(ValueError, match="bad layer"),
        starting_ray(functools.partial(refused, RaySettings(), "nowhere:1")),
    ):
        raise ValueError("bad layer")
    finish_start()  # nothing left pending


@pytest.mark.slow
def test_only_a_context_on_the_cpu_travels_and_only_to_a_worker_on_the_cpu(
    shipped: Shipped, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    import spaces.devices

    ctx, job, shared = shipped
    assert ctx.device == torch.device("cpu")
    # a worker that resolves the study's device to a GPU builds its own context there
    with monkeypatch.context() as m:
        m.setattr(spaces.devices, "resolve_device", lambda *a, **k: torch.device("cuda"))
        assert not hasattr(worker_context(job, shared), "built_by")
    # a driver's context on a GPU is not shipped
    ctx.device = torch.device("cuda")
    assert share_context(ctx) is None
