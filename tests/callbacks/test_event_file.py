import io
import os

from tensorboard.backend.event_processing.event_file_loader import (
    RawEventFileLoader)
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.record_writer import RecordWriter

from kerastrain.callbacks._event_file import EventFile


def test_writes_the_bytes_of_tensorboards_own_record_writer(tmp_path):
    events = [Event(wall_time=1.5 + step, step=step, summary=Summary(
        value=[Summary.Value(tag="loss", simple_value=1.0 / (step + 1))]))
        for step in range(3)]
    writer = EventFile(str(tmp_path))
    for event in events:
        writer.add_event(event)
    writer.close()
    assert os.listdir(tmp_path) == [os.path.basename(writer.path)]
    assert ".tfevents." in writer.path
    # Read back by TensorBoard's reader, record by record.
    loaded = [Event.FromString(record)
              for record in RawEventFileLoader(writer.path).Load()]
    assert loaded[0].file_version == "brain.Event:2"
    assert loaded[1:] == events
    # TensorBoard's writer (pure-Python checksums) on the same events.
    expected = io.BytesIO()
    records = RecordWriter(expected)
    for event in loaded:
        records.write(event.SerializeToString())
    with open(writer.path, "rb") as f:
        assert f.read() == expected.getvalue()


def test_each_writer_gets_a_file_of_its_own(tmp_path):
    first, second = EventFile(str(tmp_path)), EventFile(str(tmp_path))
    first.close(), second.close()
    assert first.path != second.path
    assert sorted(os.listdir(tmp_path)) == sorted(
        os.path.basename(w.path) for w in (first, second))
