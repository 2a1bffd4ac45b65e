"""The engine: model versions loaded, verified and batched; the data plane every protocol shares.

No HTTP and no gRPC here: the edges in ``keel.web`` turn bytes into a ``Call``
and a ``Reply`` into bytes; everything between is the same on every protocol.
"""
