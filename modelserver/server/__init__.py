"""The transports over the data plane (HTTP: v1, v2, openai, pages; gRPC: rpc) and the machinery
under them: the request cycle, the error renderer, the tornado application and the server's lifecycle."""
