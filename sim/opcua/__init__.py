"""A simulated plant served over OPC UA, and a simulator that is a client of one (decision 0061).

:mod:`twinkg.sim.opcua.address` names the address space both sides agree on,
:mod:`twinkg.sim.opcua.server` serves any :class:`twinkg.sim.adapter.Simulator` with asyncua's
server, and :mod:`twinkg.sim.opcua.remote` is the :class:`~twinkg.sim.adapter.Simulator` the
co-simulation master steps over the wire. Security is injected (``api`` passes
``connect.opcua.security``'s Basic256Sha256 SignAndEncrypt), so ``sim`` stays below ``connect``.
"""
