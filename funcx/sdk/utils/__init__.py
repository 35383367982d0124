"""funcX 0.0.1a5 ``funcx.sdk.utils`` module paths (``throttling``, ``futures``),
kept so code written against that reference imports and runs."""
