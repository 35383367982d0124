"""funcX endpoints: the agent, the ZeroMQ interchange, managers and workers."""
