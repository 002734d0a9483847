"""What the registry holds, arranged for people: the fleet, version comparison, lineage."""
