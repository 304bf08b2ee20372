"""Adapters with SQL beside the event store and read models: database, keys, throttle."""
