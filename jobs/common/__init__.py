"""Shared plumbing: settings, the Spark session, Delta Lake I/O, table catalog."""
