"""The only code that knows Redis key layouts and runs Redis commands (names come
from funcx.protocol.keys; every Lua script is in scripts.py).  Enforced by
tests/test_store_gateway.py."""
