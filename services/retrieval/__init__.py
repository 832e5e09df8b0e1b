"""Retrieval service: user tower (ONNX) -> FAISS candidate search with filters."""
