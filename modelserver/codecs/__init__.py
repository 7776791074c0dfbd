"""Pure codecs: request bodies to numpy tensors and model outputs back to response bodies."""
