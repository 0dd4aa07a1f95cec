"""abtrack_ros.model"""
