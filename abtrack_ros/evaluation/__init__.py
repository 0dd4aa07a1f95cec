"""abtrack_ros.evaluation"""
