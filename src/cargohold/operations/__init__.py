"""What the store does, one verb at a time, over the adapters (archives, registries) and storage."""
