"""``edgesight bench``: latency and throughput of models and of the device pipeline.

One job per module, so a figure is found in one hop:

- :mod:`.settings`     what to measure (``Target``, ``Settings``, the measurement names)
- :mod:`.footage`      the test video (the one panning definition) and the plain frame reader
- :mod:`.measure`      single measurements: ``Latency``, ``time_calls``, invoke, preprocess, limit, cold start
- :mod:`.sequential`   the read-preprocess-invoke loop of the usual Raspberry Pi example
- :mod:`.pipeline_run` the daemon's overlapped pipeline on a file source
- :mod:`.publisher`    the daemon's MQTT link, publishing from the pipeline child
- :mod:`.children`     fresh child processes, and the explicit registry of what a child may run
- :mod:`.mqtt_latency` capture-to-subscriber latency through a throw-away mosquitto
- :mod:`.report`       the JSON report: header, ratios, the load-average warning, writing it
- :mod:`.tables`       the report as text or Markdown tables, and the comparison of two reports
- :mod:`.orchestrator` every measurement of every target, in order

This file imports nothing, so importing one module never drags in the others (and no module
can import itself back through the package).
"""
