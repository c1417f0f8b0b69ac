"""Ways in from a plant: telemetry sources (``source``: the interface; ``registry``: the kinds;
``csv``, ``skab``, ``json``: the first implementations).

``connect`` may import ``ontology``, ``shapes``, ``kg`` and ``reasoner``; none of them imports
``connect``, and ``connect`` never imports ``api`` (settings come in as arguments).
"""
