"""The TwinKG ontology: Turtle modules, pinned imports, naming rules, generated vocabulary."""
