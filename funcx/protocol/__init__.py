"""Definitions shared by the SDK, the service and the endpoint: task states,
Redis key names, and the typed messages that cross process boundaries."""
