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
    except BaseException as e:
        # what the cell printed before it failed: on the exception (as
        # cell_stdout / cell_stderr), and on the worker's own streams
        import sys

        for name, stream, real in (("stdout", out, sys.stdout), ("stderr", err, sys.stderr)):
            if stream.getvalue():
                real.write(stream.getvalue())
                try:
                    setattr(e, f"cell_{name}", stream.getvalue())
                except AttributeError:
                    pass
        raise
    missing = [name for name in outputs if name not in namespace]
    if missing:
        raise NameError(f"the cell did not define {', '.join(missing)}")
    return {"value": value, "outputs": {name: namespace[name] for name in outputs},
            "stdout": out.getvalue(), "stderr": err.getvalue()}
