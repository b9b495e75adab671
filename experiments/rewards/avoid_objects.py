"""Stay near the centre, and keep away from the closest object in the car's lane."""


def reward_function(params):
    if not params["all_wheels_on_track"]:
        return 1e-3
    reward = 1.0 - min(params["distance_from_center"] / (0.5 * params["track_width"]), 1.0)
    closest = params.get("closest_objects") or []
    if closest:
        ahead = closest[1]
        distance = (
            (params["x"] - params["objects_location"][ahead][0]) ** 2
            + (params["y"] - params["objects_location"][ahead][1]) ** 2
        ) ** 0.5
        same_lane = params["objects_left_of_center"][ahead] == params["is_left_of_center"]
        if same_lane and distance < 0.8:
            reward *= 0.2
    return max(reward, 1e-3)
