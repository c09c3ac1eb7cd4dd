"""Deploy: signed bundles sent over the broker, and the fleet view (docs/fleet.md).

``protocol`` (wire format), ``store`` (bundles on the device, the ``active`` record),
``takeover`` (verify -> trial -> self-test -> shadow -> switch -> watch -> rollback),
``receiver`` (device side), ``sender`` (workstation side), ``fleet`` (who runs what).
"""
