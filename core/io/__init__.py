"""Artifact stores: where bundles and pointers live (a local folder, or S3 over HTTP)."""
