"""Several frames in flight through encoder -> mixer -> generator, results in input order.

A ``FramePipeline`` takes ``(B, 3, 256, 256)`` float32 faces with ``submit`` and gives back
``(B, 3, R, R)`` float32 images with ``result``, oldest first. The caller keeps at most
``inflight`` frames submitted and not yet collected (``Protector.protect_many`` does this).

- ``ThreadPipeline`` (CPU, and ONNX Runtime with IO binding): one thread per stage joined by FIFO
  queues, so the encoder of frame N+1 runs while the generator of frame N does. ONNX Runtime and
  PyTorch release the GIL while they compute.
- ``DevicePipeline`` (cuda-python; TensorRT, or any stage that can enqueue work on a stream):
  every in-flight frame has its own slot: a CUDA stream, pinned host buffers, and device buffers
  for each tensor of the frame. Copy-in, the stages and copy-out are queued on the slot's stream,
  with an event after each; shared device tensors (the key material) are written once and each stream
  waits on its ready event. Copy-in of frame N+1, compute of frame N and copy-out of frame N-1
  overlap on the GPU; ``result`` waits only for the oldest frame's last event.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from ..errors import BackendError


class FramePipeline(Protocol):
    """Frames in, results out in the same order; ``last_timings_ms`` of the latest result."""

    last_timings_ms: dict[str, float]

    def submit(self, face: np.ndarray) -> None:
        """Queue ``(B, 3, S, S)`` float32 faces; at most ``inflight`` frames may be outstanding."""
        ...

    def result(self) -> np.ndarray:
        """The oldest outstanding frame's ``(B, 3, R, R)`` float32 images (blocks until ready)."""
        ...

    def close(self) -> None:
        ...


_STOP = object()


def in_input_order(pipeline: FramePipeline, items: Iterable[Any], inflight: int,
                   collect: Callable[[FramePipeline], Any] | None = None,
                   weigh: Callable[[Any], int] | None = None, budget: int | None = None) -> Iterator[Any]:
    """Submit ``items`` keeping at most ``inflight`` in ``pipeline``; yield results in input order.

    Items are read lazily, one ahead of the results. ``collect`` takes one result (default
    ``pipeline.result``). With ``weigh`` (an item's size, e.g. its bytes) and ``budget``, items in
    the pipeline also weigh at most ``budget`` together: an item that would pass it waits for
    earlier ones to come out (one item always goes, however heavy). The pipeline is closed at the
    end, or when the consumer stops early.
    """
    if inflight < 1:
        raise ValueError(f"inflight must be >= 1, got {inflight}")
    take = collect or (lambda p: p.result())
    weights: deque[int] = deque()
    try:
        for item in items:
            weight = weigh(item) if weigh is not None and budget is not None else 0
            while weights and budget is not None and sum(weights) + weight > budget:
                weights.popleft()
                yield take(pipeline)
            pipeline.submit(item)
            weights.append(weight)
            if len(weights) == inflight:
                weights.popleft()
                yield take(pipeline)
        while weights:
            weights.popleft()
            yield take(pipeline)
    finally:
        pipeline.close()


class ThreadPipeline:
    """``steps[i]`` runs on its own thread; payloads pass from step to step through FIFO queues.

    An exception in a step travels with its frame and is raised by ``result`` for that frame only.
    """

    def __init__(self, steps: Sequence[Callable[[Any], Any]], inflight: int,
                 names: Sequence[str] | None = None) -> None:
        if inflight < 1:
            raise ValueError(f"inflight must be >= 1, got {inflight}")
        self.inflight = inflight
        self.pending = 0
        self.last_timings_ms: dict[str, float] = {}
        names = list(names or (f"step{i}" for i in range(len(steps))))
        self.queues: list[queue.Queue[Any]] = [queue.Queue() for _ in range(len(steps) + 1)]
        self.threads = [threading.Thread(target=self._work, args=(i, step, name), daemon=True,
                                         name=f"anonymixer-{name}")
                        for i, (step, name) in enumerate(zip(steps, names))]
        for thread in self.threads:
            thread.start()

    def _work(self, index: int, step: Callable[[Any], Any], name: str) -> None:
        inbox, outbox = self.queues[index], self.queues[index + 1]
        while True:
            item = inbox.get()
            if item is _STOP:
                outbox.put(_STOP)
                return
            payload, error, timings = item
            if error is None:
                start = time.perf_counter()
                try:
                    payload = step(payload)
                except Exception as exc:  # delivered to the caller with its frame
                    payload, error = None, exc
                timings[name] = (time.perf_counter() - start) * 1000.0
            outbox.put((payload, error, timings))

    def submit(self, face: np.ndarray) -> None:
        if self.pending >= self.inflight:
            raise BackendError(f"{self.inflight} frame(s) already in flight: collect a result first")
        self.pending += 1
        self.queues[0].put((face, None, {}))

    def result(self) -> Any:
        """What the last step returned for the oldest frame (an array for the networks' pipelines)."""
        if self.pending == 0:
            raise BackendError("no frame in flight")
        payload, error, timings = self.queues[-1].get()
        self.pending -= 1
        if error is not None:
            raise error
        self.last_timings_ms = timings
        return payload

    def close(self) -> None:
        if self.threads:
            self.queues[0].put(_STOP)
            for thread in self.threads:
                thread.join()
            self.threads = []


# (slot, the slot's device buffers by tensor name, the slot's stream, batch) -> queue the stage's work
DeviceStep = Callable[[int, Mapping[str, Any], Any, int], None]


class DevicePipeline:
    """Frames on their own CUDA streams through device-resident stages (see the module docstring).

    ``tensors`` maps each per-frame tensor to its per-sample shape (no batch axis), e.g.
    ``{"face": (3, 256, 256), "w_real": (L, D), "w_prot": (L, D), "image": (3, R, R)}``; buffers
    are float32, sized for ``max_batch``. ``shared`` holds device buffers common to all slots
    (``{"w_key": ...}``), ready once ``shared_ready`` (an ``Event``) has happened. ``steps`` are
    ``(stage name, DeviceStep)`` in order; ``input``/``output`` name the tensors copied in and out.
    """

    def __init__(self, tensors: Mapping[str, tuple[int, ...]], steps: Sequence[tuple[str, DeviceStep]],
                 inflight: int, max_batch: int, shared: Mapping[str, Any] | None = None,
                 shared_ready: Any = None, input: str = "face", output: str = "image") -> None:
        from .cuda import DeviceBuffer, Event, PinnedBuffer, Stream

        if inflight < 1:
            raise ValueError(f"inflight must be >= 1, got {inflight}")
        self.tensors, self.steps, self.inflight, self.max_batch = dict(tensors), list(steps), inflight, max_batch
        self.input, self.output, self.shared_ready = input, output, shared_ready
        self.last_timings_ms: dict[str, float] = {}
        self.pending: deque[tuple[int, int]] = deque()
        self.next_slot = 0
        self.marks = ("start", "copy_in", *(name for name, _ in self.steps), "copy_out")

        def nbytes(name: str) -> int:
            return max_batch * int(np.prod(self.tensors[name])) * 4

        self.streams = [Stream() for _ in range(inflight)]
        self.host_in = [PinnedBuffer(nbytes(input)) for _ in range(inflight)]
        self.host_out = [PinnedBuffer(nbytes(output)) for _ in range(inflight)]
        self.buffers: list[dict[str, Any]] = [
            {**{name: DeviceBuffer(nbytes(name)) for name in self.tensors}, **(shared or {})} for _ in range(inflight)]
        self.events = [{mark: Event() for mark in self.marks} for _ in range(inflight)]

    def submit(self, face: np.ndarray) -> None:
        from .cuda import copy_async

        face = np.ascontiguousarray(face, dtype=np.float32)
        batch = face.shape[0]
        if len(self.pending) >= self.inflight:
            raise BackendError(f"{self.inflight} frame(s) already in flight: collect a result first")
        if face.shape[1:] != tuple(self.tensors[self.input]) or not 1 <= batch <= self.max_batch:
            raise BackendError(f"frame of shape {tuple(face.shape)} does not fit this pipeline: expected "
                               f"(1..{self.max_batch}, {', '.join(map(str, self.tensors[self.input]))}); "
                               "rebuild the engines with a larger --batch MIN,OPT,MAX for bigger batches")
        slot = self.next_slot
        self.next_slot = (slot + 1) % self.inflight
        stream, buffers, events = self.streams[slot], self.buffers[slot], self.events[slot]
        # The slot's previous frame was collected (result() waited on its last event), so its
        # pinned input buffer is free to overwrite.
        self.host_in[slot].view(face.shape)[...] = face
        if self.shared_ready is not None:
            stream.wait(self.shared_ready)
        events["start"].record(stream)
        copy_async(buffers[self.input], self.host_in[slot], face.nbytes, stream)
        events["copy_in"].record(stream)
        for name, step in self.steps:
            step(slot, buffers, stream, batch)
            events[name].record(stream)
        out_bytes = batch * int(np.prod(self.tensors[self.output])) * 4
        copy_async(self.host_out[slot], buffers[self.output], out_bytes, stream)
        events["copy_out"].record(stream)
        self.pending.append((slot, batch))

    def result(self) -> np.ndarray:
        if not self.pending:
            raise BackendError("no frame in flight")
        slot, batch = self.pending.popleft()
        events = self.events[slot]
        events["copy_out"].synchronize()
        image = self.host_out[slot].view((batch, *self.tensors[self.output])).copy()
        self.last_timings_ms = {mark: events[mark].elapsed_ms(events[before])
                                for before, mark in zip(self.marks, self.marks[1:])}
        return image

    def close(self) -> None:
        """Wait for the streams, then free what this pipeline allocated (not the shared buffers)."""
        if not self.streams:
            return
        for stream in self.streams:
            stream.synchronize()
        for buffers in self.buffers:
            for name in self.tensors:
                buffers[name].free()
        for pinned in (*self.host_in, *self.host_out):
            pinned.free()
        for events in self.events:
            for event in events.values():
                event.destroy()
        for stream in self.streams:
            stream.destroy()
        self.streams = []
