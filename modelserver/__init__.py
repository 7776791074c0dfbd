"""modelserver: a tornado server that serves TensorFlow SavedModels over V1, V2 and OpenAI-style HTTP."""

__version__ = "0.1.0"
