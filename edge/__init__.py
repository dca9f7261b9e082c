"""The edge agent: audio in/out, echo cancellation, VAD, on-device ASR, prosody, playback."""
