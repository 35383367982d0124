"""funcX: federated function-as-a-service for science, self-hosted.

    from funcx import FuncXClient
    fxc = FuncXClient()
    fid = fxc.register_function(my_function)
    tid = fxc.run(1, 2, endpoint_id=EP, function_id=fid)
    fxc.get_result(tid)
"""
from funcx.version import __version__

__all__ = ["Client", "FuncXClient", "FuncXExecutor", "FuncXFuture", "MPIFunction",
           "ShellFunction", "ShellResult", "__version__", "set_file_logger", "set_stream_logger"]


def __getattr__(name: str):
    # lazy: `import funcx` stays cheap for the CLI's start-up time
    if name in ("FuncXClient", "Client"):  # Client: the Globus Compute spelling
        from funcx.sdk.client import FuncXClient

        return FuncXClient
    if name in ("set_file_logger", "set_stream_logger"):  # the 0.0.1a5 package reference
        from funcx import log_setup

        return getattr(log_setup, name)
    if name in ("FuncXExecutor", "FuncXFuture"):
        from funcx.sdk import executor

        return getattr(executor, name)
    if name in ("ShellFunction", "ShellResult", "MPIFunction"):  # as globus_compute_sdk has them
        from funcx.sdk import shell_function

        return getattr(shell_function, name)
    raise AttributeError(name)
