"""torch -> ONNX per stage, FP16 and INT8 variants, validation against torch, manifest.json."""
