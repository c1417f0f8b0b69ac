"""A tank as a pythonfmu ``Fmi2Slave``: the test suite builds it into a real FMI 2.0 FMU.

``level' = (inflow - outflow) / area`` (explicit Euler per communication step, exact for inputs
held constant over the step); ``overflowing`` is true above ``max_level``. Only this file goes into
the FMU (``pythonfmu build -f tank_slave.py``), so it imports nothing from TwinKG.
"""

from __future__ import annotations

from typing import Any

from pythonfmu import (  # type: ignore[import-untyped]
    Boolean,
    Fmi2Causality,
    Fmi2Slave,
    Fmi2Variability,
    Real,
)


class Tank(Fmi2Slave):  # type: ignore[misc]
    """A cylindrical tank: inflow and outflow in m³/s, level in m."""

    author = "TwinKG test suite"
    description = "first-order tank: level' = (inflow - outflow) / area"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.area = 2.0
        self.level0 = 1.0
        self.max_level = 5.0
        self.inflow = 0.0
        self.outflow = 0.0
        self.level = 1.0
        self.overflowing = False
        for name in ("area", "level0", "max_level"):
            self.register_variable(
                Real(name, causality=Fmi2Causality.parameter, variability=Fmi2Variability.tunable)
            )
        self.register_variable(Real("inflow", causality=Fmi2Causality.input))
        self.register_variable(Real("outflow", causality=Fmi2Causality.input))
        self.register_variable(Real("level", causality=Fmi2Causality.output))
        self.register_variable(
            Boolean(
                "overflowing",
                causality=Fmi2Causality.output,
                variability=Fmi2Variability.discrete,
            )
        )

    def exit_initialization_mode(self) -> None:
        """Start at the initial level the parameters give."""
        self.level = self.level0
        self.overflowing = self.level > self.max_level

    def do_step(self, current_time: float, step_size: float) -> bool:
        """One explicit Euler step of the mass balance."""
        self.level += (self.inflow - self.outflow) * step_size / self.area
        self.overflowing = self.level > self.max_level
        return True
