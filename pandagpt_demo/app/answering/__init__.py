"""What every answering endpoint shares (the page, `/chat` and MCP, `/v1`): the ranges a client is
held to, which files it may name, the counts and timings an operator watches, and the small core
that serves one answer."""
