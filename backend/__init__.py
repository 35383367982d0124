"""The funcX web service: Flask app, Redis store, result ingester, RQ jobs,
and the supervisor that runs them (with an embedded redis-server)."""
