"""L3 constructs: one per concern (network, storage, identity, image, backends, video, fan-out)."""
