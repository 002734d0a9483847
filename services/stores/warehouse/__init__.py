"""The prediction-log warehouse: engines, log queries and push-down aggregates."""
