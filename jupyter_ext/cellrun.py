"""The function that runs a ``%%funcx`` cell on the endpoint.

It travels as source (this is an importable module), so it is self-contained:
its imports are inside it.
"""


def run_cell(source, inputs, outputs):
    """Execute ``source`` with ``inputs`` as its variables; return the value of
    its last expression, the named ``outputs``, and what it printed."""
    import ast
    import contextlib
    import io
    import linecache

    # the cell's lines in a remote traceback
    linecache.cache["<funcx cell>"] = (len(source), None, source.splitlines(True), "<funcx cell>")
    tree = ast.parse(source, filename="<funcx cell>")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    namespace = {"__name__": "__funcx_cell__", **inputs}
    out, err = io.StringIO(), io.StringIO()
    value = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            exec(compile(tree, "<funcx cell>", "exec"), namespace)  # noqa: S102 - the user's cell
            if last is not None:
                value = eval(compile(last, "<funcx cell>", "eval"), namespace)
    except BaseException:
        # what the cell printed before it failed goes to the worker's own
        # streams, which the endpoint captures (bounded) and returns with the
        # failure; never onto the exception, whose size would then grow with
        # the output and could hide the real error behind a result-size one
        import sys

        for stream, real in ((out, sys.stdout), (err, sys.stderr)):
            if stream.getvalue():
                real.write(stream.getvalue())
        raise
    missing = [name for name in outputs if name not in namespace]
    if missing:
        raise NameError(f"the cell did not define {', '.join(missing)}")
    return {"value": value, "outputs": {name: namespace[name] for name in outputs},
            "stdout": out.getvalue(), "stderr": err.getvalue()}
