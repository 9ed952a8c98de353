"""Local emulators for the tests: pstest (Pub/Sub), fake-gcs-server (GCS) and gcsfuse.

See ``harness.py`` for the context managers and ``README.md`` for versions and flags.
"""
