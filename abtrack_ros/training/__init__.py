"""abtrack_ros.training"""
