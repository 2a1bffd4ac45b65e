"""Serving models: the model manager, the dynamic batcher, shadow mirroring and the HTTP app."""
