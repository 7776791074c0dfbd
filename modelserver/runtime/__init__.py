"""Model runtimes: what a loaded model looks like to the server, and the loaders that make one."""
