"""rosbag2 (MCAP) export of runs and datasets, written without ROS (docs/rosbag.md).

`mcap` and `mcap-ros2-support` are the optional extra `laneloop[ros]`; nothing here imports
them before a bag is opened, so the loop runs without them.
"""
