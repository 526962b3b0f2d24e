-- One PostgreSQL for the stack: the prediction log uses the default database (tickets);
-- Prefect and MLflow get their own.
CREATE DATABASE prefect;
CREATE DATABASE mlflow;
