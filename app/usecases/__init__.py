"""The application layer: every use case, run by one command handler."""
