"""The HTTP and command-line shell of tokenledger."""
