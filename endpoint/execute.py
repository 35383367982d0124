"""Run one task in a worker: deserialize, call, serialize the outcome, with
what the task writes to stdout and stderr captured into its result
(:mod:`endpoint.task_output`).

Every failure becomes a ``failed`` Result whose ``data`` is the remote
traceback text and whose ``exc_data`` is the serialized exception, so the
SDK can re-raise the function's own exception type.
"""
from __future__ import annotations

import os
import platform
import time
import traceback

import dill

from endpoint import blobs
from endpoint.task_output import OutputCapture, output_limit
from funcx.defaults import setting
from funcx.errors import MaxResultSizeExceeded, ResultSerializationFailed, SerializationError
from funcx.protocol.messages import Result, Task
from funcx.protocol.output_limits import MARKER_PREFIX, cut_text
from funcx.protocol.retry import error_types
from funcx.protocol.states import TaskState
from funcx.serialize import FunctionCache, FuncXSerializer, unpack_buffers
from funcx.serialize.choice import serialize_from_list

_serializer = FuncXSerializer()
# The worker's environment, in every result's details: globus-compute-sdk 4.19
# compares these with its own and warns on any truthy details lacking them.
WORKER_ENV = {"python_version": platform.python_version(), "dill_version": dill.__version__,
              "os": platform.platform()}
if os.environ.get("FUNCX_CONTAINER_ID"):  # set by the container command line
    WORKER_ENV["container_id"] = os.environ["FUNCX_CONTAINER_ID"]


def serialize_result(value: object, result_serializers: list[str]) -> str:
    """``value`` serialized for the result: by the first of the submit's
    ``result_serializers`` that can (:class:`ResultSerializationFailed` listing
    each one's failure if none can), else by the default data strategies."""
    if not result_serializers:
        return _serializer.serialize(value)
    try:
        return serialize_from_list(value, result_serializers)
    except SerializationError as e:
        raise ResultSerializationFailed(str(e)) from None


def remote_traceback(exc: BaseException, skip_frames: int = 0) -> str:
    """The traceback text of ``exc`` without the worker's own frames."""
    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def serialize_exception(exc: BaseException) -> str:
    try:
        exc.__traceback__ = None
        return _serializer.serialize(exc)
    except Exception:
        return ""  # the SDK falls back to TaskExecutionFailed with the text


def failure(task: Task, exc: BaseException, skip_frames: int = 0, **details) -> Result:
    """A failed result; ``details.error_types`` names the exception's class and
    its bases, which the interchange matches against a retry policy's
    ``retry_on`` (endpoint.retries) without unpickling anything.  The traceback
    is cut, and the serialized exception left out, past FUNCX_MAX_RESULT_BYTES:
    a huge exception message is no larger a result than a huge return value
    (and passes a multi-user child's size limit)."""
    limit = int(setting("MAX_RESULT_BYTES"))
    text, exc_data = remote_traceback(exc, skip_frames), serialize_exception(exc)
    if len(text) > limit:
        text = cut_text(text, limit, "traceback")
    if len(exc_data) > limit:
        exc_data = ""  # the SDK falls back to TaskExecutionFailed with the text
    return Result(task.task_id, TaskState.FAILED.value, data=text,
                  exc_data=exc_data, task_group_id=task.task_group_id,
                  details={**WORKER_ENV, "error_types": error_types(exc), **details})


class Executor:
    """Deserializes and runs tasks, caching functions by content."""

    def __init__(self, max_result_bytes: int | None = None, max_output_bytes: int | None = None,
                 output_prefix: str | None = None):
        """``output_prefix``: where each task's capture files go (see
        :class:`OutputCapture`; the manager reads them when it kills a task)."""
        self.functions = FunctionCache(_serializer)
        self.output_prefix = output_prefix
        self.max_result = int(max_result_bytes or setting("MAX_RESULT_BYTES"))
        #: bytes of each of stdout and stderr kept with a result (TASK_OUTPUT_MAX)
        self.max_output = output_limit() if max_output_bytes is None else int(max_output_bytes)

    def run(self, task: Task) -> Result:
        """Run ``task`` with its stdout and stderr captured (fd level) into its result."""
        capture = OutputCapture(self.max_output, prefix=self.output_prefix)
        try:
            capture.__enter__()
        except OSError as e:  # no temporary file (a full disk): run it all the same
            result = self._run(task)
            result.stderr = f"{MARKER_PREFIX}this task's output could not be captured: {e}]\n"
            return result
        try:
            result = self._run(task)
        finally:
            capture.__exit__(None, None, None)
        result.stdout, result.stderr = capture.stdout, capture.stderr
        return result

    def _run(self, task: Task) -> Result:
        start = time.time()
        try:
            fn = self.functions.get(task.function_code)
            if task.blobs:  # large arguments beside the payload (endpoint.blobs)
                args, kwargs = blobs.arguments(task, _serializer)
            else:
                args_buf, kwargs_buf = unpack_buffers(task.payload)
                args = _serializer.deserialize(args_buf)
                kwargs = _serializer.deserialize(kwargs_buf)
        except Exception as e:
            err = e if isinstance(e, SerializationError) else SerializationError(
                f"cannot deserialize the function or its arguments: {type(e).__name__}: {e}")
            return failure(task, err)
        try:
            value = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - the function's failure is the task's result
            if isinstance(e, (KeyboardInterrupt,)):
                raise
            return failure(task, e, skip_frames=1, exec_start=start, exec_end=time.time())
        try:  # a large default-strategy result goes as a blob (endpoint.blobs)
            data, out_blobs, size = blobs.serialize_result(
                value, task.result_serializers, task.task_id, serialize_result)
        except ResultSerializationFailed as e:
            return failure(task, e, error_code=e.code)
        except Exception as e:
            return failure(task, SerializationError(
                f"the function returned a {type(value).__name__} that cannot be serialized: {e}"))
        if size > self.max_result:  # decoded: an 8 MB array fits a 10 MiB limit
            return failure(task, MaxResultSizeExceeded(size, self.max_result))
        return Result(task.task_id, TaskState.SUCCESS.value, data=data, blobs=out_blobs,
                      task_group_id=task.task_group_id,
                      details={**WORKER_ENV, "exec_start": start, "exec_end": time.time()})
