"""The endpoints for programs: `/chat` (also the MCP tool), the OpenAI-compatible `/v1`, `/metrics`,
`/healthz` and `/readyz`."""
