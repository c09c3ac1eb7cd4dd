"""edgesight: labelled photos in, a real-time MQTT image classifier on the edge out."""

__version__ = "0.1.0"
