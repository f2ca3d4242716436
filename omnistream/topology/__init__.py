"""Systems of entities: service topologies, system windows, root-cause ranking."""
