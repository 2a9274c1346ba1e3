"""What both sides of the wire use: errors, the codec, the message schema, the plan IR, the
allowlist and executor, keys and mock generation. Imports nothing from the client or the node."""
