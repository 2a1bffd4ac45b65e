"""Watching served models: drift, null-rate and prediction-collapse detection over windows."""
