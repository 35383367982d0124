"""The ``funcx`` command line: a thin layer over the SDK and the service control."""
