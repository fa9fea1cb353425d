"""Shared implementation of the book service (catalog, search, health, chaos faults).

Nothing here runs at import time; build an app with ``services.bookservice.app.create_app``.
"""
