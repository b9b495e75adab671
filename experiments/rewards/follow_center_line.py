"""Reward the car for staying close to the centre line (the classic starter reward)."""


def reward_function(params):
    track_width = params["track_width"]
    distance_from_center = params["distance_from_center"]
    if not params["all_wheels_on_track"]:
        return 1e-3
    if distance_from_center <= 0.1 * track_width:
        return 1.0
    if distance_from_center <= 0.25 * track_width:
        return 0.5
    if distance_from_center <= 0.5 * track_width:
        return 0.1
    return 1e-3
