"""The web edge: keel's HTTP/1.1 server, the ASGI app and its routes, errors to status codes.

Bytes in, bytes out: framing, limits and status codes. Every inference goes to
the engine's data plane (``keel.serving.data_plane``); nothing here knows how a
model is run.
"""
