"""MQTT 5 connectivity: the topic scheme, the local Mosquitto broker and its certificates, the
client the twin's workers use, and telemetry taken in by subscription, in order per topic."""
