"""abtrack_ros.data"""
