"""Co-simulation: real plant simulators coupled to degradation and sensor-fault models, the closed
loop that lets the twin's agents act on them, baseline policies, and the KPIs that judge them.

Every simulator sits behind :class:`twinkg.sim.adapter.Simulator`, an interface shaped like FMI 2.0
co-simulation; :mod:`twinkg.sim.master` steps several of them at a fixed communication step.
"""
