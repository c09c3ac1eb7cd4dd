"""Trainer CLI verbs; each imports TensorFlow inside run(), never at import time."""
