"""Model runtimes: the format registry that picks one from the files, the repository of loaded
versions, and one module per kind of model (TensorFlow SavedModels, Hugging Face directories)."""
