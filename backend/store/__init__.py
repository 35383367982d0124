"""The only code that knows Redis key layouts (names come from funcx.protocol.keys)."""
