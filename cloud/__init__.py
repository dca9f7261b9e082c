"""The cloud tier: engines (LLM, TTS), conversation logic, Ray Serve deployments, gateway."""
