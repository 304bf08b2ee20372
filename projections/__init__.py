"""Read models folded from the event log: inline in the append transaction, or rebuilt."""
