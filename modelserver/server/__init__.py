"""The tornado application: routes, handlers and the server's lifecycle."""
