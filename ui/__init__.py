"""The pages' helpers: cached backends, the session's actor, notices, widgets, tables."""
