"""The MQTT 3.1.1 gateway: any MQTT client is a Pica client (docs/protocol.md, MQTT).

``topics.py`` holds the pure rules (which topics send where, which filters a user may hold); ``gateway.py`` is the
transport, a :class:`pica.gateway.connection.Connection` like the TCP and WebSocket ones, driven by the sans-I/O codec
of :mod:`pica.protocol.mqtt`.
"""

from pica.mqtt.gateway import MqttConnection, start_mqtt_server

__all__ = ["MqttConnection", "start_mqtt_server"]
