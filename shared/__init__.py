"""Pure code both sides import: the wire protocol, audio formats, errors, the CLI root."""
