"""OPC UA connectivity (decision 0058): application security (``security``), the reviewable
mapping of variables to sensors and setpoints (``mapping``, written by ``writer``, units by
``units``), a draft mapping from a live server or a NodeSet2 file (``browse``), telemetry by
subscription (``ingest``) and setpoints written back for recorded, allowed actions
(``writeback``)."""
