"""Hugging Face model directories (config.json, safetensors weights, tokenizer.json) run on TensorFlow."""
