"""SHACL shapes: data contracts (contracts/) and safety constraints (safety/)."""
