"""endpoint.blobs.send / recv: a message's frames sent and received one by
one with plain int flags (issue 20: pyzmq's send_multipart makes an enum
object per frame), over real ZeroMQ."""
from __future__ import annotations

import pytest
import zmq

from endpoint import blobs


def test_a_frame_that_is_not_bytes_fails_before_any_frame_is_sent():
    """endpoint.blobs.send sends a message's frames itself (issue 20: no enum
    flags per frame): a bad frame must not leave half a message on the socket."""
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        a.bind("inproc://h3-frames")
        b.connect("inproc://h3-frames")
        with pytest.raises(TypeError):
            blobs.send(a, [b"one", "not bytes"])
        blobs.send(a, [b"x", memoryview(b"y" * 70_000), b"z"])
        got = blobs.recv(b)
        assert [bytes(f) for f in got] == [b"x", b"y" * 70_000, b"z"]  # no stray "one"
        assert isinstance(got[1], memoryview) and isinstance(got[0], bytes)
    finally:
        a.close(linger=0)
        b.close(linger=0)
        ctx.term()
