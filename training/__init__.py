"""Offline training: data, models, ONNX export, FAISS index, bundles (needs the [train] extra)."""
