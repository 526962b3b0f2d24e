"""Publishing models: manifest, verified bundle, champion pointer, promotion, MLflow registry
aliases and retention of old bundles."""
