"""Real example models, trained on data that ships with scikit-learn (no downloads).

Each module trains, exports to a safe format and publishes through the same
``keel.publish`` and signature a user would call. Run one directly with
``python -m keel.examples.breast_cancer --registry ./registry``.
"""
