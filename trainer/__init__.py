"""Workstation side of edgesight: data, training, evaluation, export (TensorFlow/Keras)."""
