"""Prefect flows: wiring of synthgen library calls, no math."""
