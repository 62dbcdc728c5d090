"""A run's log: metrics.jsonl plus a TensorBoard event file, written by process 0.

Events are framed by TensorBoard's own record writer into a plain file: its
EventFileWriter imports TensorFlow when present, which adds seconds to every start,
and a resumed run starts often. TensorBoard is optional (absent on some GPU images).
"""

from __future__ import annotations

import json
import math
import os
import socket
import time

from krd_jax import distributed


class RunLog:
  """Appends {"step", "kind", **values} records; "kind" is "train", "val" or "test"."""

  def __init__(self, run_dir: str):
    self.path = os.path.join(run_dir, "metrics.jsonl")
    self.enabled = distributed.is_primary()
    self.events = None
    if not self.enabled:
      return
    _end_partial_line(self.path)
    try:
      from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top
      from tensorboard.summary.writer import record_writer  # pylint: disable=g-import-not-at-top
    except ImportError:
      return
    self._pb = (event_pb2, summary_pb2)
    name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
    self.events = record_writer.RecordWriter(open(os.path.join(run_dir, name), "ab"))
    self._add(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

  def _add(self, event) -> None:
    self.events.write(event.SerializeToString())
    self.events.flush()

  def write(self, step: int, kind: str, values: dict) -> None:
    if not self.enabled:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": step, "kind": kind, **values}) + "\n")
    if self.events is not None:
      event_pb2, summary_pb2 = self._pb
      tags = [summary_pb2.Summary.Value(tag=f"{kind}/{k}", simple_value=float(v))
              for k, v in values.items()
              if isinstance(v, (int, float)) and not math.isnan(v)]
      self._add(event_pb2.Event(wall_time=time.time(), step=step,
                                summary=summary_pb2.Summary(value=tags)))

  def close(self) -> None:
    if self.events is not None:
      self.events.close()


def _end_partial_line(path: str) -> None:
  """Terminates a last line a killed run left half written, so appends stay JSONL."""
  if os.path.exists(path) and os.path.getsize(path):
    with open(path, "rb+") as f:
      f.seek(-1, os.SEEK_END)
      if f.read(1) != b"\n":
        f.write(b"\n")
