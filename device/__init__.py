"""Device side of edgesight: load a model bundle, classify frames, talk MQTT. Never imports TensorFlow."""
