"""The TensorFlow-free core both sides share: errors, preprocessing, the bundle format, TOML files.

The trainer imports these to write bundles and fit photos exactly as the device will; nothing
here imports from the daemon, the benchmark or the trainer.
"""
