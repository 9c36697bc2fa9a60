"""Length-prefixed pickled frames between the Train dock and its training child process.

The child (:mod:`.train_child`) writes them to its standard output; the dock's run
(:mod:`.training_run`) reads them. Only this project's own child process writes them (a
user's file is never read through here).
"""

from __future__ import annotations

import pickle
import struct

HEADER = struct.Struct("<Q")


def write_frame(stream, obj) -> None:
    """Write one length-prefixed pickled frame and flush."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def read_frame(stream):
    """The next frame of ``stream``, or ``None`` at its end."""
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    size = HEADER.unpack(head)[0]
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)
