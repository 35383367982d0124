"""The path a user takes first: register, run with args and kwargs, get the result."""


def add(a, b=0):
    return a + b


def test_run_and_get_result(fxc, endpoint):
    fid = fxc.register_function(add)
    tid = fxc.run(2, endpoint_id=endpoint, function_id=fid, b=40)
    fxc.wait([tid], timeout=60)
    assert fxc.get_result(tid) == 42
