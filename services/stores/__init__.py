"""The stores: the only modules that talk to the registry, the warehouse or tower state."""
