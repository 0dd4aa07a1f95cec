"""abtrack_ros.ros"""
