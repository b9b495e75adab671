"""L3 constructs: one per concern (network, storage, image, backends, job roles and definitions, video, fan-out)."""
