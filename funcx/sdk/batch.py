"""``Batch``: many tasks submitted in one request per endpoint."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from funcx.protocol.retry import build_policy, policy_key
from funcx.sdk.blobs import serialize_payload
from funcx.sdk.names import require_ids
from funcx.serialize import FuncXSerializer
from funcx.serialize.choice import import_paths


@dataclass
class BatchTask:
    endpoint_id: str
    function_id: str
    payload: str
    #: this task's own retry policy (Batch.add(..., retries=)); None: the batch's
    retry_policy: dict | None = None


@dataclass
class Batch:
    """Tasks to submit together; ``FuncXClient.batch_run`` returns their ids in order."""

    task_group_id: str | None = None
    resource_specification: dict | None = None
    serializer: FuncXSerializer = field(default_factory=FuncXSerializer)
    tasks: list[BatchTask] = field(default_factory=list)
    #: strategy import paths the endpoint serializes each result with (the first
    #: that can; e.g. ["funcx.serialize.JSONData"]); None: the default
    result_serializers: list[str] | None = None
    #: re-runs on the endpoint of each task that fails with an exception named in
    #: ``retry_on`` (classes or names; any exception when None): README "Retries"
    retries: int = 0
    retry_on: Any = None
    #: values for a multi-user endpoint's user config template (checked at submit
    #: against the schema it publishes): README "Multi-user endpoints"
    user_endpoint_config: dict | None = None

    def __post_init__(self) -> None:
        self.retry_policy = build_policy(self.retries, self.retry_on)  # refused here if bad
        if self.result_serializers is not None:  # instances, classes or paths: made canonical
            self.result_serializers = import_paths(self.result_serializers) or None

    def add(self, *args: Any, endpoint_id: str | None = None, function_id: str | None = None,
            **kwargs: Any) -> None:
        """Add one task (the endpoint and function by id or name; names are
        resolved when the batch is run).  Two spellings, as in the funcX docs::

            batch.add(1, 2, endpoint_id=ep, function_id=fn, key=3)   # args, kwargs inline
            batch.add(fn, ep, args=(1, 2), kwargs={"key": 3})          # ids first

        The ids-first spelling also takes this task's own ``retries`` and
        ``retry_on`` (instead of the batch's; README "Retries"): inline, every
        keyword is the function's."""
        policy: dict | None = None
        if function_id is None and endpoint_id is None:
            if len(args) != 2:
                raise TypeError("Batch.add needs endpoint_id= and function_id=, "
                                "or (function_id, endpoint_id, args=(), kwargs={})")
            function_id, endpoint_id = args
            extra = set(kwargs) - {"args", "kwargs", "retries", "retry_on"}
            if extra:
                raise TypeError(f"unexpected keyword arguments {sorted(extra)}; "
                                "pass the function's keyword arguments as kwargs={...}")
            if "retries" in kwargs or "retry_on" in kwargs:
                policy = build_policy(kwargs.get("retries"), kwargs.get("retry_on"))
            args, kwargs = tuple(kwargs.get("args", ())), dict(kwargs.get("kwargs", {}))
        elif function_id is None or endpoint_id is None:
            require_ids("Batch.add()", endpoint_id, function_id, kwargs)
        self.tasks.append(BatchTask(str(endpoint_id), str(function_id),
                                    serialize_payload(self.serializer, args, kwargs), policy))

    def __len__(self) -> int:
        return len(self.tasks)

    def policy_of(self, i: int) -> dict:
        """The retry policy of the ``i``-th task: its own, else the batch's."""
        own = self.tasks[i].retry_policy
        return self.retry_policy if own is None else own

    def by_submit(self) -> dict[tuple[str, tuple], list[int]]:
        """Positions of the tasks of each endpoint and retry policy (one submit
        request each), in the order they were added."""
        out: dict[tuple[str, tuple], list[int]] = {}
        for i, t in enumerate(self.tasks):
            out.setdefault((t.endpoint_id, policy_key(self.policy_of(i))), []).append(i)
        return out

    def by_endpoint(self) -> dict[str, list[int]]:
        """Positions of the tasks of each endpoint, in the order they were added."""
        out: dict[str, list[int]] = {}
        for i, t in enumerate(self.tasks):
            out.setdefault(t.endpoint_id, []).append(i)
        return out
