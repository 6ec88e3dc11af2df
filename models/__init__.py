"""The bundled model zoo: <name>.safetensors weights beside <name>.json model cards."""
