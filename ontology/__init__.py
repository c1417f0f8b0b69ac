"""The TwinKG ontology: Turtle modules, pinned imports, naming rules and the generated vocabulary."""
