"""Conversation logic of the cloud tier: pure Python, no Ray (context, clauses, prosody,
turns, sessions)."""
