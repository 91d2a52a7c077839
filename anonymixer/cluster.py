"""Archives on a Ray cluster: ``anonymixer protect INPUT... --ray [ADDRESS]`` (and ``rekey --ray``).

The only module that imports ``ray`` (``pip install 'anonymixer[ray]'``). Ray schedules; we
do not: a pool of actors, each of which opens one Protector (and one detector) once and then
runs the single-process per-input step, ``face.app.protect_source``, on what it is given:

- photos in batches of ``ClusterOptions.batch`` (one actor call per batch),
- each video whole, in one call, so that landmark smoothing sees every frame in order.

The driver plans the outputs (``face.app.plan_output``: names, collisions) exactly as a single
process does, hands out work (videos first: the longest jobs), and merges the actors' per-input
reports in input order, so the outputs, report lines and exit code are those of a single process.
Every output is written by the same code, atomically (a temporary name, then a rename), so an actor
killed mid-file leaves no half-written file under a final name; Ray restarts it
(``max_restarts``) and runs its call again (``max_task_retries``); a call that still fails is
reported as one line per input it held, and the other inputs finish.

The secret reaches the actors through Ray's object store only: the driver ``ray.put``s the
``Key`` and passes the reference to the actors' constructor, so it is in no task argument, task
or actor name, log line or file of ours (``Key`` prints as its fingerprint). It *is* in the
object store's shared memory and in every actor's memory: see README, "Keys on a cluster".

Inputs and the output folder must be on storage that every node sees at the same path (the
actors work in the driver's working folder); file contents never travel through Ray.

Test hook: ``ANONYMIXER_RAY_FAULT_AFTER_FRAMES=N`` in the driver's environment makes actor 0 exit
(``os._exit``) when it is about to process its Nth frame, once per run (not after a restart).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError
from tqdm import tqdm

from .errors import AnonymixerError
from .face.app import plan_output, processing_order, protect_source
from .face.runreport import Outcome, RunReport
from .face.outputs import OutputPlan
from .face.record import Setup
from .face.sources import Source
from .face.video import VideoOptions
from .keys import Key

FAULT_ENV = "ANONYMIXER_RAY_FAULT_AFTER_FRAMES"
# What an actor needs to open its Protector and detector (see runtime.options.protector_from_args); never the key.
SETTINGS = ("model", "onnx", "engines", "backend", "device", "precision", "resolution", "salt",
            "inflight", "detector", "no_face", "batch", "trusted_key", "identity_check")


@dataclass(frozen=True)
class ClusterOptions:
    """``address``: a Ray cluster (``auto``, ``HOST:PORT``, ``ray://HOST:10001``), ``None`` for a local
    instance (or the cluster ``$RAY_ADDRESS`` names); an instance already started in this process is
    used as it is. ``actors``: pool size (``None``: as many as the cluster's CPUs, or GPUs, allow).
    ``cpus_per_actor`` is also each actor's thread count; ``batch``: photos per actor call."""

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    batch: int = 8
    max_restarts: int = 3


class ProtectorActor:
    """One Protector + detector, opened once; ``protect`` runs ``protect_source`` per input."""

    def __init__(self, settings: argparse.Namespace, key_ref: list[Any], cwd: str, index: int,
                 fault_after_frames: int | None) -> None:
        # The reference is wrapped in a list so that Ray does not resolve it into the creation
        # task: the actor fetches the key from the object store itself, again after a restart.
        key: Key = ray.get(key_ref[0])
        self.index = index
        self.video = VideoOptions.from_settings(settings)
        self.fingerprint = key.fingerprint
        self.problem: str | None = None
        try:
            os.chdir(cwd)
        except OSError:
            self.problem = (f"the working folder {cwd} does not exist on this Ray node; inputs and --out "
                            "must be on storage that every node mounts at the same path")
            return
        from .runtime.options import protector_from_args
        from .face.detect import open_detector
        from .face.pipeline import FaceProtector

        try:
            from .signing import trust

            trust(settings.trusted_key)   # the driver's key (--trusted-key or its environment's), on every node
            detector = open_detector(settings.detector)
            self.protector = protector_from_args(settings, key)
        except AnonymixerError as exc:
            self.problem = str(exc)
            return
        if "torch" in sys.modules:  # Ray sets OMP_NUM_THREADS; say it to torch as well
            sys.modules["torch"].set_num_threads(max(1, int(settings.threads)))
        self.face_protector = FaceProtector(self.protector, detector, no_face=settings.no_face,
                                            max_batch=settings.batch,
                                            identity_check=getattr(settings, "identity_check", True))
        if fault_after_frames and index == 0 and not ray.get_runtime_context().was_current_actor_reconstructed:
            self._exit_at_frame(fault_after_frames)

    def __repr__(self) -> str:  # Ray prefixes the actor's log lines with this
        return f"ProtectorActor({self.index}, key {self.fingerprint})"

    def setup(self) -> Setup | str:
        """The header lines' facts, or the one-line reason this actor could not open its models."""
        if self.problem is not None:
            return self.problem
        info = self.protector.info
        return Setup(info.description, self.protector.fingerprint, self.protector.backend.describe(),
                     self.face_protector.detector.name, info.is_random)

    def protect(self, work: list[tuple[Source, Path | None]], max_frames: int | None) -> list[RunReport]:
        """One report per ``(source, output path)``, in order."""
        return [protect_source(self.face_protector, source, target, max_frames=max_frames, video=self.video)
                for source, target in work]

    def _exit_at_frame(self, n: int) -> None:
        process = self.face_protector.prepare   # the first phase of every frame, one at a time or in flight
        seen = 0

        def process_or_die(*args: Any, **kwargs: Any) -> Any:
            nonlocal seen
            seen += 1
            if seen == n:
                os.write(2, f"anonymixer: injected fault: actor {self.index} exits at frame {n}\n".encode())
                os._exit(1)  # an injected crash: no cleanup, no exception, like a killed process
            return process(*args, **kwargs)

        self.face_protector.prepare = process_or_die  # type: ignore[method-assign]


def protect_on_cluster(settings: argparse.Namespace, key: Key, sources: list[Source], out_dir: Path,
                       options: ClusterOptions, *, max_frames: int | None = None,
                       on_setup: Callable[[Setup], None] = lambda setup: None) -> RunReport:
    """Protect ``sources`` into ``out_dir`` on a pool of Ray actors; the report of a single process.

    ``settings``: the command's options (``SETTINGS``); ``on_setup`` is called once the first
    actor has opened its models. ``AnonymixerError`` when Ray cannot start or the actors cannot
    open the model or detector.
    """
    started = time.perf_counter()
    own_instance = not ray.is_initialized()
    if own_instance:
        _connect(options.address)
    try:
        report = _run(settings, key, sources, out_dir, options, max_frames, on_setup)
    finally:
        if own_instance:
            ray.shutdown()
    report.seconds = time.perf_counter() - started
    return report


def describe(options: ClusterOptions) -> str:
    """One line about the pool, e.g. ``ray: 2 actor(s), 1 CPU and 0 GPU each, 8 photos per call``."""
    actors = options.actors if options.actors is not None else "auto"
    return (f"ray: {actors} actor(s), {options.cpus_per_actor:g} CPU and {options.gpus_per_actor:g} GPU each, "
            f"{options.batch} photo(s) per call, on {options.address or 'a local Ray instance'}")


def _connect(address: str | None) -> None:
    import logging

    try:
        ray.init(address=address, include_dashboard=False if address is None else None,
                 log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:  # Ray raises plain Exception for a node that does not start in time
        where = address or "a local Ray instance"
        raise AnonymixerError(f"cannot start or reach {where}: {_reason(exc)}") from None


def _run(settings: argparse.Namespace, key: Key, sources: list[Source], out_dir: Path,
         options: ClusterOptions, max_frames: int | None, on_setup: Callable[[Setup], None]) -> RunReport:
    # Plan every output here, as protect_sources does, into one report per input.
    pieces: list[RunReport] = []
    work: list[tuple[Source, Path | None]] = []
    slot: list[int] = []
    plan = OutputPlan(out_dir, [str(s.location) for s in sources if not s.live])
    for source in processing_order(sources):
        piece = RunReport()
        usable, target = plan_output(source, plan, piece)
        pieces.append(piece)
        if usable:
            work.append((source, target))
            slot.append(len(pieces) - 1)
    calls = _calls(work, options.batch)
    key_ref = ray.put(key)  # the object store carries the secret; held here until every call has ended
    actors = _start_actors(settings, key_ref, options, len(calls))
    try:
        try:
            setups = ray.get([actor.setup.remote() for actor in actors])
        except RayError as exc:
            raise AnonymixerError(f"the Ray actors could not start: {_reason(exc)}") from None
        for setup in setups:
            if isinstance(setup, str):
                raise AnonymixerError(setup)
        on_setup(setups[0])
        results = _dispatch(actors, calls, work, max_frames)
    finally:
        for actor in actors:
            ray.kill(actor)
        del key_ref
    for indices, reports in zip(calls, results):
        for i, report in zip(indices, reports):
            pieces[slot[i]] = report
    _remove_partials([target for _, target in work if target is not None])
    merged = RunReport()
    for piece in pieces:
        merged.merge(piece)
    return merged


def _calls(work: list[tuple[Source, Path | None]], batch: int) -> list[list[int]]:
    """Indices into ``work`` per actor call: each video alone (first: the longest jobs), then
    photos in batches of ``batch``, in order."""
    videos = [[i] for i, (source, _) in enumerate(work) if source.kind != "image"]
    photos = [i for i, (source, _) in enumerate(work) if source.kind == "image"]
    return videos + [photos[i:i + batch] for i in range(0, len(photos), batch)]


def _start_actors(settings: argparse.Namespace, key_ref: Any, options: ClusterOptions, calls: int) -> list[Any]:
    resources = ray.cluster_resources()
    count = options.actors
    if count is None:
        if options.gpus_per_actor > 0:
            count = int(resources.get("GPU", 0) // options.gpus_per_actor)
        else:
            count = int(resources.get("CPU", 1) // max(options.cpus_per_actor, 1e-3))
    count = max(1, min(count, max(calls, 1)))
    if options.gpus_per_actor > resources.get("GPU", 0):
        raise AnonymixerError(f"--ray-gpus-per-actor {options.gpus_per_actor:g}: the Ray cluster has "
                              f"{resources.get('GPU', 0):g} GPU(s)")
    actor_settings = argparse.Namespace(**{name: getattr(settings, name, None) for name in SETTINGS},
                                        threads=max(1, int(options.cpus_per_actor)))
    fault = os.environ.get(FAULT_ENV)
    actor_class = ray.remote(ProtectorActor).options(
        num_cpus=options.cpus_per_actor, num_gpus=options.gpus_per_actor,
        max_restarts=options.max_restarts, max_task_retries=options.max_restarts)
    return [actor_class.remote(actor_settings, [key_ref], os.getcwd(), index, int(fault) if fault else None)
            for index in range(count)]


def _dispatch(actors: list[Any], calls: list[list[int]], work: list[tuple[Source, Path | None]],
              max_frames: int | None) -> list[list[RunReport]]:
    """Run every call on an idle actor (one call in flight per actor: back-pressure); the reports
    per call, in call order. A call that fails even after Ray's retries becomes failure lines."""
    results: list[list[RunReport]] = [[] for _ in calls]
    queue = list(range(len(calls)))
    idle = list(actors)
    pending: dict[Any, tuple[int, Any]] = {}
    inputs = sum(len(call) for call in calls)
    with tqdm(total=inputs, unit="input", desc="ray", disable=None) as bar:
        while queue or pending:
            while idle and queue:
                call, actor = queue.pop(0), idle.pop(0)
                ref = actor.protect.remote([work[i] for i in calls[call]], max_frames)
                pending[ref] = (call, actor)
            if not pending:  # every actor is gone
                for call in queue:
                    results[call] = _failed(work, calls[call], "no Ray actor is left to run it")
                break
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            call, actor = pending.pop(ref)
            try:
                results[call] = ray.get(ref)
                idle.append(actor)
            except RayActorError as exc:  # restarts used up: this actor is gone for good
                results[call] = _failed(work, calls[call], f"its Ray actor died ({_reason(exc)})")
            except RayError as exc:
                results[call] = _failed(work, calls[call], f"its Ray call failed ({_reason(exc)})")
                idle.append(actor)
            bar.update(len(calls[call]))
    return results


def _failed(work: list[tuple[Source, Path | None]], indices: list[int], why: str) -> list[RunReport]:
    reports = []
    for i in indices:
        source = work[i][0]
        line = f"{source}: not protected: {why}; run it again"
        reports.append(RunReport(failures=[line], failed_inputs=1, outcomes=[Outcome(source, None, True, (line,))]))
    return reports


def _reason(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(exc).__name__


def _remove_partials(targets: list[Path]) -> None:
    """Remove the hidden temporary files that killed actors left next to these outputs (their
    final names were never written); called once every actor call has ended."""
    from .atomic import PARTIAL_MARK

    for target in targets:
        for leftover in target.parent.glob(f".{target.stem}{PARTIAL_MARK}*{target.suffix}"):
            try:
                leftover.unlink()
            except OSError:
                pass
