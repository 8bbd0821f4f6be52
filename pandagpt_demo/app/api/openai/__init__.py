"""OpenAI's chat-completions protocol: reading a request body, and the `/v1` routes."""
