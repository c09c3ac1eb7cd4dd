"""Everything MQTT: topic names (``topics``), Home Assistant discovery (``discovery``), the command
table (``commands``) and the paho link (``link``). See docs/mqtt.md for the topic table and
docs/remote-control.md for who may send which command.

This ``__init__`` imports nothing on purpose: ``config`` derives its allowed commands from
``mqtt.commands``, and ``mqtt.link`` reads a ``Config``; importing the link here would make that a
cycle through the package.
"""
