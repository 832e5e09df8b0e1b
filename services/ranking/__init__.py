"""Ranking service: ONNX ranking model (CUDA execution provider first, CPU fallback)."""
