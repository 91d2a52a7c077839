"""PyTorch reference networks, written to export cleanly to ONNX."""
