"""The WRITE path, run by the worker: claim pending rows, encode them, write their vectors
into the live vector spaces, switch spaces, sweep forgotten rows."""
