"""keel: run machine-learning models in production the boring, reliable way."""
