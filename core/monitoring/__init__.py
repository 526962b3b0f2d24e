"""Watching the served model: windows of the log, drift and concept drift, the retraining
policy, and the dashboard's data."""
