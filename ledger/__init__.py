"""The domain of tokenledger: events, pure deciders, protocol rules and the event store."""
