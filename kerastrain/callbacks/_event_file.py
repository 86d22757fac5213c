"""A TensorBoard event file, written by TensorFlow's record writer.

An event file is a TFRecord file of serialized `Event` protocol buffers
whose name holds `tfevents`. TensorBoard's own `EventFileWriter` computes
each record's CRC-32C checksum in pure Python, on a thread that holds the
GIL: about 4 ms for the 30 KB of histograms a small ResNet logs per epoch,
while training waits. `tf.io.TFRecordWriter` writes the same records with
its C++ checksum (TensorFlow is a dependency: the input pipelines are
tf.data, and tensorboard's writer imports it too, for its file system).
"""

import itertools
import os
import socket
import time

from tensorboard.compat.proto.event_pb2 import Event, SessionLog

_UIDS = itertools.count()


class EventFile:
    """Appends `Event`s to a new event file in `log_dir`, as TensorBoard's
    `EventFileWriter` names and starts one (`events.out.tfevents.<time>.
    <host>.<pid>.<uid>`, then a `brain.Event:2` version record); each
    `add_event` is written at once, `flush` pushes it to the file system.
    """

    def __init__(self, log_dir):
        import tensorflow as tf

        os.makedirs(log_dir, exist_ok=True)
        self.path = os.path.join(
            log_dir, f"events.out.tfevents.{int(time.time()):010d}."
            f"{socket.gethostname()}.{os.getpid()}.{next(_UIDS)}")
        self._writer = tf.io.TFRecordWriter(self.path)
        self.add_event(Event(wall_time=time.time(),
                             file_version="brain.Event:2"))
        self.flush()

    def start_session(self, step):
        """Marks a (re)start at `step`: TensorBoard then drops what earlier
        files of the run logged from `step` on (a crashed run's epochs
        after its last backup, or a run started over), instead of showing
        those steps twice."""
        self.add_event(Event(wall_time=time.time(), step=step,
                             session_log=SessionLog(
                                 status=SessionLog.START)))

    def add_event(self, event):
        self._writer.write(event.SerializeToString())

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()
