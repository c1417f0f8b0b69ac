"""Meta-SHACL: every shapes file TwinKG loads must itself conform to SHACL-SHACL.

W3C SHACL §C (https://www.w3.org/TR/shacl/#shacl-shacl). pySHACL ships the SHACL-SHACL shapes;
this module applies them and turns the first problem into one line of :class:`ShapesError`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pyshacl
from pyshacl.errors import ReportableRuntimeError
from rdflib import RDF, SH, Graph

from twinkg.ontology.errors import ShapesError


@functools.cache
def shacl_shacl() -> Graph:
    """The W3C SHACL-SHACL shapes, as pySHACL ships them (its own meta_shacl uses the file)."""
    return Graph().parse(Path(pyshacl.__file__).parent / "assets" / "shacl-shacl.ttl")


def check_shapes(shapes: Graph) -> None:
    """Raise :class:`ShapesError` unless ``shapes`` conforms to SHACL-SHACL."""
    try:
        conforms, report, _ = pyshacl.validate(shapes, shacl_graph=shacl_shacl(), inference="none")
    except ReportableRuntimeError as exc:
        raise ShapesError(f"the shapes cannot be checked: {exc.message}") from exc
    if conforms:
        return
    assert isinstance(report, Graph)
    first = sorted(
        (
            str(report.value(r, SH.focusNode)),
            str(report.value(r, SH.resultPath) or ""),
            str(report.value(r, SH.resultMessage) or ""),
        )
        for r in report.subjects(RDF.type, SH.ValidationResult)
    )[0]
    raise ShapesError(f"shapes fail meta-SHACL: {first[0]} {first[1]}: {first[2]}")
