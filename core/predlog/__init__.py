"""The operational database (SQLite or PostgreSQL): predictions, feedback, webhook claims,
retrain decisions, drift reports, promotions and hourly history."""
