"""The HTTP transports over the data plane (v1, v2, openai, pages) and the machinery under them:
the request cycle, the error renderer, the tornado application and the server's lifecycle."""
