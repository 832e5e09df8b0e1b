"""Offline training: data, models, ONNX export, FAISS index, artifact bundles. Needs the [train] extra."""
