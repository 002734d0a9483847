"""Helpers shared by the tests: real databases, started and isolated per test."""
