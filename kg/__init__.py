"""Storage: Neo4j access (the only package that imports ``neo4j``), named Cypher, the RDF ↔
property-graph mapping, and the local Neo4j server."""
