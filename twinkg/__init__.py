"""TwinKG: a knowledge graph for agentic digital twins.

Every package of the project is imported under this one name: ``twinkg.ontology``,
``twinkg.shapes``, ``twinkg.kg``, ``twinkg.reasoner``, ``twinkg.agents``, ``twinkg.graph_seed``,
``twinkg.connect`` and ``twinkg.api``. Their folders stay at the repository root where the
design puts them; this package holds a relative link to each (decision 0030), so that the
interpreter, the wheel, mypy and editors all see the same ``twinkg.*`` tree, and nothing of
TwinKG is installed under a generic top-level name such as ``agents`` or ``api``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("twinkg")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
