"""Stay near the centre line, with all wheels on the track, pointing where the track goes.

A smooth reward: 1.0 on the centre line falling linearly to 0 at the track edge, scaled down
when the car's heading drifts from the direction of the next waypoint.
"""

import math


def reward_function(params):
    if not params["all_wheels_on_track"] or params["is_offtrack"]:
        return 1e-3
    half_width = 0.5 * params["track_width"]
    centred = max(0.0, 1.0 - params["distance_from_center"] / half_width)

    waypoints = params["waypoints"]
    behind, ahead = params["closest_waypoints"]
    dx = waypoints[ahead][0] - waypoints[behind][0]
    dy = waypoints[ahead][1] - waypoints[behind][1]
    track_heading = math.degrees(math.atan2(dy, dx))
    drift = abs((params["heading"] - track_heading + 180.0) % 360.0 - 180.0)
    aligned = 1.0 if drift < 10.0 else max(0.2, 1.0 - drift / 90.0)

    return max(1e-3, centred * aligned)
